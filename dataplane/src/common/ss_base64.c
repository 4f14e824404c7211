/* ss_base64.c - base64 for meta protocol keys (see ss_base64.h). */
#include <stdint.h>

#include "ss_base64.h"

static const char enc_table[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 0 for '=', 0xff for anything else. */
static uint8_t dec_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return (uint8_t)(ch - 'A');
    if (ch >= 'a' && ch <= 'z')
        return (uint8_t)(ch - 'a' + 26);
    if (ch >= '0' && ch <= '9')
        return (uint8_t)(ch - '0' + 52);
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    if (ch == '=')
        return 0;
    return 0xff;
}

/*
 * Encode n bytes with '=' padding. Returns bytes written to out, which must
 * hold SS_BASE64_ENCODED_LEN(n).
 */
size_t ss_base64_encode(const unsigned char *src, size_t n, char *out)
{
    char *pos = out;
    size_t i = 0;
    for (; n - i >= 3; i += 3) {
        *pos++ = enc_table[src[i] >> 2];
        *pos++ = enc_table[((src[i] & 0x03) << 4) | (src[i + 1] >> 4)];
        *pos++ = enc_table[((src[i + 1] & 0x0f) << 2) | (src[i + 2] >> 6)];
        *pos++ = enc_table[src[i + 2] & 0x3f];
    }
    if (n - i == 1) {
        *pos++ = enc_table[src[i] >> 2];
        *pos++ = enc_table[(src[i] & 0x03) << 4];
        *pos++ = '=';
        *pos++ = '=';
    } else if (n - i == 2) {
        *pos++ = enc_table[src[i] >> 2];
        *pos++ = enc_table[((src[i] & 0x03) << 4) | (src[i + 1] >> 4)];
        *pos++ = enc_table[(src[i + 1] & 0x0f) << 2];
        *pos++ = '=';
    }
    return (size_t)(pos - out);
}

/*
 * Decode with memcached's tolerance (non-alphabet bytes are skipped). The
 * output never outruns the input, so decoding in place is safe. Returns the
 * decoded length or 0 for invalid input.
 */
size_t ss_base64_decode(const char *src, size_t n, unsigned char *out)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (dec_value((unsigned char)src[i]) != 0xff)
            count++;
    if (count == 0 || count % 4)
        return 0;

    unsigned char *pos = out;
    uint8_t block[4];
    int nb = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t v = dec_value((unsigned char)src[i]);
        if (v == 0xff)
            continue;
        if (src[i] == '=')
            pad++;
        block[nb++] = v;
        if (nb < 4)
            continue;
        *pos++ = (unsigned char)((block[0] << 2) | (block[1] >> 4));
        *pos++ = (unsigned char)((block[1] << 4) | (block[2] >> 2));
        *pos++ = (unsigned char)((block[2] << 6) | block[3]);
        nb = 0;
        if (pad) {
            if (pad > 2)
                return 0;
            pos -= pad;
            break;
        }
    }
    return (size_t)(pos - out);
}
