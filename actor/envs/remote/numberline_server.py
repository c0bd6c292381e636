#!/usr/bin/python3
"""NumberLine served from Python: the same game as actor/envs/numberline.c
(same rules, rewards, prompt, seeded deal and picture, byte for byte),
playable by a gtrt actor as "remote:<endpoint>".

    /usr/bin/python3 actor/envs/remote/numberline_server.py --bind tcp://127.0.0.1:5555
    gtrt env play --env remote:tcp://127.0.0.1:5555 --seed 3 --actions "+,+,-"

Positions 0..5; start and target drawn with common/rng.c's generator
(rng_below(6), then rng_below(5) skipping the start). Actions '-' and '+'
move by one, clamped at 0 and 5. Reward +1 on reaching the target (the
episode ends), -1 when the distance does not shrink, 0 otherwise; after 10
steps the episode is truncated.

Needs Debian's python3-zmq and python3-protobuf.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import envserver  # noqa: E402
import render  # noqa: E402

MAX_POS = 5
MAX_STEPS = 10


class NumberLine:
    name = 'numberline'
    actions = ['-', '+']
    answer_keys = [('current', False), ('target', False), ('thoughts', False), ('action', False)]
    native_w, native_h = 64, 16
    format_valid, format_invalid = 0.3, -0.2

    def __init__(self, prompt_actions=False, solvable_only=True):
        self.prompt_actions = prompt_actions
        self.pos = self.target = self.steps = 0
        self.won = False
        self.reset(0)

    def reset(self, seed):
        r = render.Rng(seed)
        self.pos = r.below(MAX_POS + 1)
        self.target = r.below(MAX_POS)  # uniform over the other positions
        if self.target >= self.pos:
            self.target += 1
        self.steps = 0
        self.won = False

    def deal(self, cards):
        if (len(cards) != 2 or not all(0 <= c <= MAX_POS for c in cards)
                or cards[0] == cards[1]):
            return False
        self.pos, self.target = cards
        self.steps = 0
        self.won = False
        return True

    def step(self, action):
        """-> (reward, legal, terminated, truncated)"""
        before = abs(self.pos - self.target)
        if action == 0 and self.pos > 0:
            self.pos -= 1
        elif action == 1 and self.pos < MAX_POS:
            self.pos += 1
        self.steps += 1
        after = abs(self.pos - self.target)
        if after == 0:
            self.won = True
            return 1.0, True, True, False
        return (0.0 if after < before else -1.0), True, False, self.steps >= MAX_STEPS

    def legal_actions(self):
        return [0, 1]

    def prompt(self):
        return ('move the current number to the target number with + or - .'
                + (' actions : - +' if self.prompt_actions else ''))

    def draw(self):
        c = render.Canvas(self.native_w, self.native_h, render.FELT)
        c.fill(0, 0, c.w, c.h, render.WHITE)
        c.text(1, 0, 'TARGET: %d' % self.target, render.BLACK)
        c.text(1, 8, 'CURRENT: %d' % self.pos, render.BLACK)
        return c

    def info(self):
        return {'current': self.pos, 'target': self.target}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--bind', default='tcp://127.0.0.1:5555',
                    help="ZeroMQ endpoint to serve on (tcp://HOST:* picks a free port)")
    ap.add_argument('--id', default='numberline-server', help='sender id in replies')
    ap.add_argument('--max-sessions', type=int, default=1024,
                    help='envs kept at once (least recently used dropped first)')
    ap.add_argument('--idle-s', type=float, default=600.0,
                    help='drop an env after this many seconds without requests')
    ap.add_argument('--server-key', help="CURVE: the cluster's server.key (with --allow)")
    ap.add_argument('--allow', help='CURVE: allow-list of client public keys')
    a = ap.parse_args(argv)
    envserver.serve(NumberLine, a.bind, a.id, a.max_sessions, a.idle_s,
                    server_key=a.server_key, allow=a.allow)
    return 0


if __name__ == '__main__':
    sys.exit(main())
