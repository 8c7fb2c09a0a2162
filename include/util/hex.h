/* hex — lower-case hexadecimal, both ways. */
#ifndef SNAPFS_HEX_H
#define SNAPFS_HEX_H

#include <stddef.h>

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* The value of one hex digit (either case), or -1. */
int hex_value(int c);

#endif
