/* Bytes per key of a keyed group: cb_group_size over capacity, for the configurations
   docs/bench.md quotes (template: consecutive_failures = 5). usage: group_size OUT.json */
#define CB_IMPLEMENTATION
#include "cb.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    static const struct { uint32_t capacity, key_max; } sizes[] = { { 100000, 64 }, { 1024, 16 } };
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.json\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fprintf(f, "{\n  \"template\": \"consecutive_failures = 5\",\n  \"results\": [\n");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        cb_group_config gc = { .breaker = { .name = "bench", .consecutive_failures = 5 },
                               .capacity = sizes[i].capacity, .key_max = sizes[i].key_max };
        size_t n = cb_group_size(&gc);
        if (!n) {
            fprintf(stderr, "group_size: config %u x %u rejected\n", sizes[i].capacity,
                    sizes[i].key_max);
            return 1;
        }
        fprintf(f, "    {\"capacity\": %u, \"key_max\": %u, \"bytes\": %zu, \"bytes_per_key\": %.1f}%s\n",
                sizes[i].capacity, sizes[i].key_max, n, (double)n / sizes[i].capacity,
                i + 1 < sizeof sizes / sizeof sizes[0] ? "," : "");
        printf("group_size: capacity %u, key_max %u: %zu bytes, %.1f per key\n", sizes[i].capacity,
               sizes[i].key_max, n, (double)n / sizes[i].capacity);
    }
    fprintf(f, "  ]\n}\n");
    return fclose(f) ? 1 : 0;
}
