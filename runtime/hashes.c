/* The hash functions that a static libpython built the way Debian builds it
 * calls but does not hold.
 *
 * CPython's built-in _md5, _sha1, _sha2, _sha3 and _blake2 call the HACL*
 * streaming API (names prefixed _Py_LibHacl_), which CPython's own build
 * links from archives that `make install` does not install. A bin/caddy
 * that links such a libpython statically gets them from here instead: the
 * fixed-parameter hashes from OpenSSL's libcrypto, which that Python's
 * _hashlib and _ssl already need, and BLAKE2 written out from RFC 7693,
 * since libcrypto has no salt, personalisation or tree parameters.
 *
 * Only the entry points those modules call exist, with the argument and
 * return types their object code passes (the same in 3.14 and 3.15):
 * lengths as uint32_t (the modules split larger buffers), error codes as
 * uint8_t, 0 for success. A digest never ends the running state: the
 * modules digest, then go on updating. This file is compiled only into a
 * binary that links libpython statically (plugin/hashes.c's build tag);
 * anywhere else the Python in the process brings its own. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define HACL(name) _Py_LibHacl_Hacl_Hash_##name

typedef uint8_t hacl_error;
enum {
    HACL_SUCCESS = 0,
    HACL_INVALID_ALGORITHM = 1,
    HACL_INVALID_LENGTH = 2,
};

/* HACL*'s Spec_Hash_Definitions_hash_alg, as _sha3 passes it to malloc. */
enum {
    ALG_SHA3_256 = 8,
    ALG_SHA3_224 = 9,
    ALG_SHA3_384 = 10,
    ALG_SHA3_512 = 11,
    ALG_SHAKE128 = 12,
    ALG_SHAKE256 = 13,
};

/* The modules treat every handle as opaque; for the fixed-parameter hashes
 * it is OpenSSL's context itself. */
typedef EVP_MD_CTX md_state;

/* The HACL* functions that cannot report a failure (digest, which the
 * modules also call without looking at its result) must not hand back a
 * wrong digest either; copying a context is the only step that allocates,
 * so only an exhausted heap gets here. */
static void md_fail(const char *what)
{
    fprintf(stderr, "vivarium: OpenSSL could not %s a hash state (out of memory?)\n", what);
    abort();
}

static md_state *md_new(const EVP_MD *md)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx != NULL && EVP_DigestInit_ex(ctx, md, NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static md_state *md_copy(md_state *from)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx != NULL && EVP_MD_CTX_copy_ex(ctx, from) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static hacl_error md_update(md_state *ctx, const uint8_t *data, uint32_t len)
{
    if (len != 0 && EVP_DigestUpdate(ctx, data, len) != 1)
        md_fail("update");
    return HACL_SUCCESS;
}

/* Finishes a copy, so that ctx goes on; xof_len > 0 squeezes that many
 * bytes of a SHAKE. Writes the algorithm's own digest size otherwise (28
 * bytes for SHA-224 into _sha2's 32-byte buffer, which it cuts). */
static void md_digest(md_state *ctx, uint8_t *out, uint32_t xof_len)
{
    EVP_MD_CTX *tmp = md_copy(ctx);
    if (tmp == NULL)
        md_fail("copy");
    int ok = xof_len > 0 ? EVP_DigestFinalXOF(tmp, out, xof_len) : EVP_DigestFinal_ex(tmp, out, NULL);
    EVP_MD_CTX_free(tmp);
    if (ok != 1)
        md_fail("finish");
}

/* MD5 and SHA-1 */

md_state *HACL(MD5_malloc)(void) { return md_new(EVP_md5()); }
md_state *HACL(MD5_copy)(md_state *s) { return md_copy(s); }
void HACL(MD5_free)(md_state *s) { EVP_MD_CTX_free(s); }
hacl_error HACL(MD5_update)(md_state *s, uint8_t *data, uint32_t len) { return md_update(s, data, len); }
void HACL(MD5_digest)(md_state *s, uint8_t *out) { md_digest(s, out, 0); }

md_state *HACL(SHA1_malloc)(void) { return md_new(EVP_sha1()); }
md_state *HACL(SHA1_copy)(md_state *s) { return md_copy(s); }
void HACL(SHA1_free)(md_state *s) { EVP_MD_CTX_free(s); }
hacl_error HACL(SHA1_update)(md_state *s, uint8_t *data, uint32_t len) { return md_update(s, data, len); }
void HACL(SHA1_digest)(md_state *s, uint8_t *out) { md_digest(s, out, 0); }

/* SHA-2: _sha2 keeps SHA-224 in a "256" state and SHA-384 in a "512" one,
 * calling the 256/512 functions on them. */

md_state *HACL(SHA2_malloc_224)(void) { return md_new(EVP_sha224()); }
md_state *HACL(SHA2_malloc_256)(void) { return md_new(EVP_sha256()); }
md_state *HACL(SHA2_malloc_384)(void) { return md_new(EVP_sha384()); }
md_state *HACL(SHA2_malloc_512)(void) { return md_new(EVP_sha512()); }
md_state *HACL(SHA2_copy_256)(md_state *s) { return md_copy(s); }
md_state *HACL(SHA2_copy_512)(md_state *s) { return md_copy(s); }
void HACL(SHA2_free_256)(md_state *s) { EVP_MD_CTX_free(s); }
void HACL(SHA2_free_512)(md_state *s) { EVP_MD_CTX_free(s); }
hacl_error HACL(SHA2_update_256)(md_state *s, uint8_t *data, uint32_t len) { return md_update(s, data, len); }
hacl_error HACL(SHA2_update_512)(md_state *s, uint8_t *data, uint32_t len) { return md_update(s, data, len); }
void HACL(SHA2_digest_256)(md_state *s, uint8_t *out) { md_digest(s, out, 0); }
void HACL(SHA2_digest_512)(md_state *s, uint8_t *out) { md_digest(s, out, 0); }

/* SHA-3 and SHAKE: _sha3 asks the state what it is. */

typedef struct {
    EVP_MD_CTX *ctx;
    uint8_t alg;
} sha3_state;

static const EVP_MD *sha3_md(uint8_t alg)
{
    switch (alg) {
    case ALG_SHA3_224: return EVP_sha3_224();
    case ALG_SHA3_256: return EVP_sha3_256();
    case ALG_SHA3_384: return EVP_sha3_384();
    case ALG_SHA3_512: return EVP_sha3_512();
    case ALG_SHAKE128: return EVP_shake128();
    case ALG_SHAKE256: return EVP_shake256();
    default: return NULL;
    }
}

static sha3_state *sha3_wrap(EVP_MD_CTX *ctx, uint8_t alg)
{
    sha3_state *s = ctx != NULL ? malloc(sizeof *s) : NULL;
    if (s == NULL) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    s->ctx = ctx;
    s->alg = alg;
    return s;
}

sha3_state *HACL(SHA3_malloc)(uint8_t alg)
{
    const EVP_MD *md = sha3_md(alg);
    return md != NULL ? sha3_wrap(md_new(md), alg) : NULL;
}

sha3_state *HACL(SHA3_copy)(sha3_state *s) { return sha3_wrap(md_copy(s->ctx), s->alg); }

void HACL(SHA3_free)(sha3_state *s)
{
    if (s == NULL)
        return;
    EVP_MD_CTX_free(s->ctx);
    free(s);
}

bool HACL(SHA3_is_shake)(sha3_state *s) { return s->alg == ALG_SHAKE128 || s->alg == ALG_SHAKE256; }

/* The rate in bytes: _sha3 derives _rate_bits and _capacity_bits from it. */
uint32_t HACL(SHA3_block_len)(sha3_state *s) { return (uint32_t)EVP_MD_get_block_size(sha3_md(s->alg)); }

/* A SHAKE has no fixed length (_sha3 does not ask for one). */
uint32_t HACL(SHA3_hash_len)(sha3_state *s)
{
    return HACL(SHA3_is_shake)(s) ? 0 : (uint32_t)EVP_MD_get_size(sha3_md(s->alg));
}

hacl_error HACL(SHA3_update)(sha3_state *s, uint8_t *data, uint32_t len) { return md_update(s->ctx, data, len); }

hacl_error HACL(SHA3_digest)(sha3_state *s, uint8_t *out)
{
    if (HACL(SHA3_is_shake)(s))
        return HACL_INVALID_ALGORITHM;
    md_digest(s->ctx, out, 0);
    return HACL_SUCCESS;
}

/* Every squeeze reads the output from its start, as a digest does. */
hacl_error HACL(SHA3_squeeze)(sha3_state *s, uint8_t *out, uint32_t len)
{
    if (!HACL(SHA3_is_shake)(s))
        return HACL_INVALID_ALGORITHM;
    if (len == 0)
        return HACL_INVALID_LENGTH;
    md_digest(s->ctx, out, len);
    return HACL_SUCCESS;
}

/* BLAKE2b and BLAKE2s (RFC 7693), with the whole parameter block of the
 * BLAKE2 paper (section 2.8), which _blake2 fills in from its arguments. */

/* HACL*'s Hacl_Hash_Blake2b_blake2_params, which _blake2 passes for both
 * variants; it has already checked every length against the variant's
 * limits, and salt and personal point at zero-padded buffers of the
 * variant's size. */
typedef struct {
    uint8_t digest_length;
    uint8_t key_length;
    uint8_t fanout;
    uint8_t depth;
    uint32_t leaf_length;
    uint64_t node_offset;
    uint8_t node_depth;
    uint8_t inner_length;
    uint8_t *salt;
    uint8_t *personal;
} blake2_params;

/* What _blake2's digest_size getter reads: returned by value, in a register. */
typedef struct {
    uint8_t key_length;
    uint8_t digest_length;
    bool last_node;
} blake2_info;

static const uint8_t blake2_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* BLAKE2b: 64-bit words, 128-byte blocks, 12 rounds. */

#define B2B_BLOCK 128

typedef struct {
    uint64_t h[8];
    uint64_t t[2];
    uint8_t buf[B2B_BLOCK];
    uint32_t buflen;
    blake2_info info;
} blake2b_state;

static const uint64_t blake2b_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static inline uint64_t ror64(uint64_t x, int n) { return x >> n | x << (64 - n); }

#define B2B_G(a, b, c, d, x, y)       \
    do {                              \
        v[a] = v[a] + v[b] + (x);     \
        v[d] = ror64(v[d] ^ v[a], 32); \
        v[c] = v[c] + v[d];           \
        v[b] = ror64(v[b] ^ v[c], 24); \
        v[a] = v[a] + v[b] + (y);     \
        v[d] = ror64(v[d] ^ v[a], 16); \
        v[c] = v[c] + v[d];           \
        v[b] = ror64(v[b] ^ v[c], 63); \
    } while (0)

static void blake2b_compress(blake2b_state *s, const uint8_t *block, bool final)
{
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++)
        m[i] = get_le(block + 8 * i, 8);
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = blake2b_iv[i];
    }
    v[12] ^= s->t[0];
    v[13] ^= s->t[1];
    if (final) {
        v[14] = ~v[14];
        if (s->info.last_node)
            v[15] = ~v[15];
    }
    for (int r = 0; r < 12; r++) {
        const uint8_t *z = blake2_sigma[r];
        B2B_G(0, 4, 8, 12, m[z[0]], m[z[1]]);
        B2B_G(1, 5, 9, 13, m[z[2]], m[z[3]]);
        B2B_G(2, 6, 10, 14, m[z[4]], m[z[5]]);
        B2B_G(3, 7, 11, 15, m[z[6]], m[z[7]]);
        B2B_G(0, 5, 10, 15, m[z[8]], m[z[9]]);
        B2B_G(1, 6, 11, 12, m[z[10]], m[z[11]]);
        B2B_G(2, 7, 8, 13, m[z[12]], m[z[13]]);
        B2B_G(3, 4, 9, 14, m[z[14]], m[z[15]]);
    }
    for (int i = 0; i < 8; i++)
        s->h[i] ^= v[i] ^ v[i + 8];
}

static void blake2b_count(blake2b_state *s, uint32_t n)
{
    s->t[0] += n;
    if (s->t[0] < n)
        s->t[1]++;
}

/* The last block is compressed only by digest, which must know it is the
 * last: a full buffer waits until more input comes. */
static hacl_error blake2b_update(blake2b_state *s, const uint8_t *in, uint32_t len)
{
    if (len > 0 && s->buflen + len > B2B_BLOCK) {
        uint32_t fill = B2B_BLOCK - s->buflen;
        memcpy(s->buf + s->buflen, in, fill);
        blake2b_count(s, B2B_BLOCK);
        blake2b_compress(s, s->buf, false);
        s->buflen = 0;
        in += fill;
        len -= fill;
        while (len > B2B_BLOCK) {
            blake2b_count(s, B2B_BLOCK);
            blake2b_compress(s, in, false);
            in += B2B_BLOCK;
            len -= B2B_BLOCK;
        }
    }
    memcpy(s->buf + s->buflen, in, len);
    s->buflen += len;
    return HACL_SUCCESS;
}

static blake2b_state *blake2b_new(const blake2_params *p, bool last_node, const uint8_t *key)
{
    blake2b_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    uint8_t block[64] = {0};
    block[0] = p->digest_length;
    block[1] = p->key_length;
    block[2] = p->fanout;
    block[3] = p->depth;
    put_le(block + 4, p->leaf_length, 4);
    put_le(block + 8, p->node_offset, 8);
    block[16] = p->node_depth;
    block[17] = p->inner_length;
    if (p->salt != NULL)
        memcpy(block + 32, p->salt, 16);
    if (p->personal != NULL)
        memcpy(block + 48, p->personal, 16);
    for (int i = 0; i < 8; i++)
        s->h[i] = blake2b_iv[i] ^ get_le(block + 8 * i, 8);
    s->info = (blake2_info){.key_length = p->key_length, .digest_length = p->digest_length, .last_node = last_node};
    if (p->key_length > 0) {
        memcpy(s->buf, key, p->key_length);
        s->buflen = B2B_BLOCK;
    }
    return s;
}

static uint8_t blake2b_digest(blake2b_state *s, uint8_t *out)
{
    blake2b_state last = *s;
    memset(last.buf + last.buflen, 0, B2B_BLOCK - last.buflen);
    blake2b_count(&last, last.buflen);
    blake2b_compress(&last, last.buf, true);
    uint8_t full[64];
    for (int i = 0; i < 8; i++)
        put_le(full + 8 * i, last.h[i], 8);
    memcpy(out, full, s->info.digest_length);
    OPENSSL_cleanse(&last, sizeof last);
    OPENSSL_cleanse(full, sizeof full);
    return s->info.digest_length;
}

/* BLAKE2s: 32-bit words, 64-byte blocks, 10 rounds. */

#define B2S_BLOCK 64

typedef struct {
    uint32_t h[8];
    uint32_t t[2];
    uint8_t buf[B2S_BLOCK];
    uint32_t buflen;
    blake2_info info;
} blake2s_state;

static const uint32_t blake2s_iv[8] = {
    0x6a09e667U, 0xbb67ae85U, 0x3c6ef372U, 0xa54ff53aU, 0x510e527fU, 0x9b05688cU, 0x1f83d9abU, 0x5be0cd19U,
};

static inline uint32_t ror32(uint32_t x, int n) { return x >> n | x << (32 - n); }

#define B2S_G(a, b, c, d, x, y)       \
    do {                              \
        v[a] = v[a] + v[b] + (x);     \
        v[d] = ror32(v[d] ^ v[a], 16); \
        v[c] = v[c] + v[d];           \
        v[b] = ror32(v[b] ^ v[c], 12); \
        v[a] = v[a] + v[b] + (y);     \
        v[d] = ror32(v[d] ^ v[a], 8);  \
        v[c] = v[c] + v[d];           \
        v[b] = ror32(v[b] ^ v[c], 7);  \
    } while (0)

static void blake2s_compress(blake2s_state *s, const uint8_t *block, bool final)
{
    uint32_t m[16], v[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)get_le(block + 4 * i, 4);
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = blake2s_iv[i];
    }
    v[12] ^= s->t[0];
    v[13] ^= s->t[1];
    if (final) {
        v[14] = ~v[14];
        if (s->info.last_node)
            v[15] = ~v[15];
    }
    for (int r = 0; r < 10; r++) {
        const uint8_t *z = blake2_sigma[r];
        B2S_G(0, 4, 8, 12, m[z[0]], m[z[1]]);
        B2S_G(1, 5, 9, 13, m[z[2]], m[z[3]]);
        B2S_G(2, 6, 10, 14, m[z[4]], m[z[5]]);
        B2S_G(3, 7, 11, 15, m[z[6]], m[z[7]]);
        B2S_G(0, 5, 10, 15, m[z[8]], m[z[9]]);
        B2S_G(1, 6, 11, 12, m[z[10]], m[z[11]]);
        B2S_G(2, 7, 8, 13, m[z[12]], m[z[13]]);
        B2S_G(3, 4, 9, 14, m[z[14]], m[z[15]]);
    }
    for (int i = 0; i < 8; i++)
        s->h[i] ^= v[i] ^ v[i + 8];
}

static void blake2s_count(blake2s_state *s, uint32_t n)
{
    s->t[0] += n;
    if (s->t[0] < n)
        s->t[1]++;
}

static hacl_error blake2s_update(blake2s_state *s, const uint8_t *in, uint32_t len)
{
    if (len > 0 && s->buflen + len > B2S_BLOCK) {
        uint32_t fill = B2S_BLOCK - s->buflen;
        memcpy(s->buf + s->buflen, in, fill);
        blake2s_count(s, B2S_BLOCK);
        blake2s_compress(s, s->buf, false);
        s->buflen = 0;
        in += fill;
        len -= fill;
        while (len > B2S_BLOCK) {
            blake2s_count(s, B2S_BLOCK);
            blake2s_compress(s, in, false);
            in += B2S_BLOCK;
            len -= B2S_BLOCK;
        }
    }
    memcpy(s->buf + s->buflen, in, len);
    s->buflen += len;
    return HACL_SUCCESS;
}

/* BLAKE2s's node_offset has 48 bits; _blake2 refuses larger ones. */
static blake2s_state *blake2s_new(const blake2_params *p, bool last_node, const uint8_t *key)
{
    blake2s_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    uint8_t block[32] = {0};
    block[0] = p->digest_length;
    block[1] = p->key_length;
    block[2] = p->fanout;
    block[3] = p->depth;
    put_le(block + 4, p->leaf_length, 4);
    put_le(block + 8, p->node_offset, 6);
    block[14] = p->node_depth;
    block[15] = p->inner_length;
    if (p->salt != NULL)
        memcpy(block + 16, p->salt, 8);
    if (p->personal != NULL)
        memcpy(block + 24, p->personal, 8);
    for (int i = 0; i < 8; i++)
        s->h[i] = blake2s_iv[i] ^ (uint32_t)get_le(block + 4 * i, 4);
    s->info = (blake2_info){.key_length = p->key_length, .digest_length = p->digest_length, .last_node = last_node};
    if (p->key_length > 0) {
        memcpy(s->buf, key, p->key_length);
        s->buflen = B2S_BLOCK;
    }
    return s;
}

static uint8_t blake2s_digest(blake2s_state *s, uint8_t *out)
{
    blake2s_state last = *s;
    memset(last.buf + last.buflen, 0, B2S_BLOCK - last.buflen);
    blake2s_count(&last, last.buflen);
    blake2s_compress(&last, last.buf, true);
    uint8_t full[32];
    for (int i = 0; i < 8; i++)
        put_le(full + 4 * i, last.h[i], 4);
    memcpy(out, full, s->info.digest_length);
    OPENSSL_cleanse(&last, sizeof last);
    OPENSSL_cleanse(full, sizeof full);
    return s->info.digest_length;
}

/* The entry points. _blake2 picks the SIMD ones when the CPU has the
 * instructions; they are the portable code here, on the same state. A state
 * holds the key until freed, so copies and frees go through these. */

static blake2b_state *blake2b_copy(const blake2b_state *s)
{
    blake2b_state *c = malloc(sizeof *c);
    if (c != NULL)
        *c = *s;
    return c;
}

static blake2s_state *blake2s_copy(const blake2s_state *s)
{
    blake2s_state *c = malloc(sizeof *c);
    if (c != NULL)
        *c = *s;
    return c;
}

static void blake2_free(void *s, size_t size)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, size);
    free(s);
}

blake2b_state *HACL(Blake2b_malloc_with_params_and_key)(blake2_params *p, bool last_node, uint8_t *k) { return blake2b_new(p, last_node, k); }
hacl_error HACL(Blake2b_update)(blake2b_state *s, uint8_t *data, uint32_t len) { return blake2b_update(s, data, len); }
uint8_t HACL(Blake2b_digest)(blake2b_state *s, uint8_t *out) { return blake2b_digest(s, out); }
blake2_info HACL(Blake2b_info)(blake2b_state *s) { return s->info; }
blake2b_state *HACL(Blake2b_copy)(blake2b_state *s) { return blake2b_copy(s); }
void HACL(Blake2b_free)(blake2b_state *s) { blake2_free(s, sizeof *s); }
blake2b_state *HACL(Blake2b_Simd256_malloc_with_params_and_key)(blake2_params *p, bool last_node, uint8_t *k) { return blake2b_new(p, last_node, k); }
hacl_error HACL(Blake2b_Simd256_update)(blake2b_state *s, uint8_t *data, uint32_t len) { return blake2b_update(s, data, len); }
uint8_t HACL(Blake2b_Simd256_digest)(blake2b_state *s, uint8_t *out) { return blake2b_digest(s, out); }
blake2_info HACL(Blake2b_Simd256_info)(blake2b_state *s) { return s->info; }
blake2b_state *HACL(Blake2b_Simd256_copy)(blake2b_state *s) { return blake2b_copy(s); }
void HACL(Blake2b_Simd256_free)(blake2b_state *s) { blake2_free(s, sizeof *s); }
blake2s_state *HACL(Blake2s_malloc_with_params_and_key)(blake2_params *p, bool last_node, uint8_t *k) { return blake2s_new(p, last_node, k); }
hacl_error HACL(Blake2s_update)(blake2s_state *s, uint8_t *data, uint32_t len) { return blake2s_update(s, data, len); }
uint8_t HACL(Blake2s_digest)(blake2s_state *s, uint8_t *out) { return blake2s_digest(s, out); }
blake2_info HACL(Blake2s_info)(blake2s_state *s) { return s->info; }
blake2s_state *HACL(Blake2s_copy)(blake2s_state *s) { return blake2s_copy(s); }
void HACL(Blake2s_free)(blake2s_state *s) { blake2_free(s, sizeof *s); }
blake2s_state *HACL(Blake2s_Simd128_malloc_with_params_and_key)(blake2_params *p, bool last_node, uint8_t *k) { return blake2s_new(p, last_node, k); }
hacl_error HACL(Blake2s_Simd128_update)(blake2s_state *s, uint8_t *data, uint32_t len) { return blake2s_update(s, data, len); }
uint8_t HACL(Blake2s_Simd128_digest)(blake2s_state *s, uint8_t *out) { return blake2s_digest(s, out); }
blake2_info HACL(Blake2s_Simd128_info)(blake2s_state *s) { return s->info; }
blake2s_state *HACL(Blake2s_Simd128_copy)(blake2s_state *s) { return blake2s_copy(s); }
void HACL(Blake2s_Simd128_free)(blake2s_state *s) { blake2_free(s, sizeof *s); }
