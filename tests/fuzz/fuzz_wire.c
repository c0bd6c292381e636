/* libFuzzer target for the envelope decoder: the input is split into
 * frames at 0xFE 0xFF markers, so the fuzzer explores frame counts too. */
#include <stddef.h>
#include <stdint.h>

#include "common/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_slice frames[WIRE_MAX_FRAMES + 8];
    size_t n = 0, start = 0;
    for (size_t i = 0; i + 1 < size && n < WIRE_MAX_FRAMES + 7; i++)
        if (data[i] == 0xFE && data[i + 1] == 0xFF) {
            frames[n++] = (wire_slice){data + start, i - start};
            start = i + 2;
            i++;
        }
    frames[n++] = (wire_slice){data + start, size - start};
    wire_msg m;
    if (wire_decode(frames, n, &m) == WIRE_OK)
        wire_msg_clear(&m);
    return 0;
}
