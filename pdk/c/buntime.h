/*
 * buntime.h - single-header C PDK for Buntime guests (Extism ABI).
 *
 * Guests import their host functions from the wasm import modules
 * "extism:host/env" (the Extism ABI) and "extism:host/user" (Buntime's own
 * functions). This header declares those imports and a handful of small
 * static inline helpers on top of them. It needs no libc at all: build
 * freestanding, e.g.
 *
 *   clang --target=wasm32-unknown-unknown -O2 -nostdlib -ffreestanding \
 *         -Wl,--no-entry -o plugin.wasm plugin.c
 *
 * Only the functions a module actually uses become imports, so a module that
 * does not call buntime_request_body / buntime_response_body_write also loads
 * in hosts that do not offer them (such as the reference Extism runtime).
 *
 * Memory model
 * ------------
 * Data crosses the boundary through *handles*: 64-bit offsets into a memory
 * that the host manages, distinct from the guest's own linear memory.
 *   - alloc(n) returns the handle of a fresh n-byte block, or 0 if n is 0 or
 *     the guest's memory limit leaves no room;
 *   - store_u8 / store_u64 write into a block, load_u8 / load_u64 read it
 *     (addresses are handle + byte offset; u64 accesses are little-endian);
 *   - length(h) is the length of the block at h, 0 if h is not a block;
 *   - handle 0 means "nothing" (e.g. a missing config key or variable);
 *     there are no empty blocks;
 *   - every handle becomes invalid when the call returns.
 * The call's input is read with input_length / input_load_u8 / input_load_u64
 * (addresses are plain byte offsets into the input).
 *
 * Exports
 * -------
 * A callable function takes no parameters and returns an int32_t status,
 * 0 for success; a non-zero status after error_set() reports a failure:
 *
 *   BUNTIME_EXPORT("greet") int32_t greet(void) { ... return 0; }
 *
 * Helpers
 * -------
 * Helpers that allocate never pass a 0 handle on to the host: they report
 * BUNTIME_ERR_NO_MEMORY instead. Empty keys and empty error messages, which
 * the ABI cannot carry (handle 0 is not a block), give BUNTIME_ERR_EMPTY.
 */
#ifndef BUNTIME_H
#define BUNTIME_H

#include <stdint.h> /* freestanding header: provided by the compiler */

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* ABI version                                                              */
/* ------------------------------------------------------------------------ */

/* The Buntime ABI version this header speaks (docs/abi.md §2). Every module
 * that includes it declares the version in its "buntime_abi" custom section
 * (a 4-byte little-endian record per translation unit; the linker joins
 * them), so a host older than the header refuses it by name instead of
 * failing on a missing import. */
#define BUNTIME_ABI_VERSION 2
#define BUNTIME__STR2(x) #x
#define BUNTIME__STR(x) BUNTIME__STR2(x)
__asm__(".section .custom_section.buntime_abi,\"\",@\n"
        ".int32 " BUNTIME__STR(BUNTIME_ABI_VERSION) "\n");

/* ------------------------------------------------------------------------ */
/* Host imports: extism:host/env                                            */
/* ------------------------------------------------------------------------ */

#define BUNTIME_IMPORT(name) \
    __attribute__((import_module("extism:host/env"), import_name(name)))

/* Mark a guest function as a callable export named `name`. */
#define BUNTIME_EXPORT(name) __attribute__((export_name(name)))

/* A handle: offset of a block in host-managed memory (0 = none). */
typedef uint64_t buntime_handle;

/* Input of the current call. u8 results travel as wasm i32. */
BUNTIME_IMPORT("input_length")   uint64_t extism_input_length(void);
BUNTIME_IMPORT("input_load_u8")  uint32_t extism_input_load_u8(uint64_t offs);
BUNTIME_IMPORT("input_load_u64") uint64_t extism_input_load_u64(uint64_t offs);
/* A block holding a copy of the input (the same block on every use within a
 * call); 0 if the input is empty or does not fit. */
BUNTIME_IMPORT("input_offset")   buntime_handle extism_input_offset(void);

/* Host-managed memory. */
BUNTIME_IMPORT("alloc")         buntime_handle extism_alloc(uint64_t n);
BUNTIME_IMPORT("free")          void           extism_free(buntime_handle h);
BUNTIME_IMPORT("length")        uint64_t       extism_length(buntime_handle h);
BUNTIME_IMPORT("length_unsafe") uint64_t       extism_length_unsafe(buntime_handle h);
BUNTIME_IMPORT("store_u8")      void           extism_store_u8(uint64_t addr, uint32_t byte);
BUNTIME_IMPORT("load_u8")       uint32_t       extism_load_u8(uint64_t addr);
BUNTIME_IMPORT("store_u64")     void           extism_store_u64(uint64_t addr, uint64_t v);
BUNTIME_IMPORT("load_u64")      uint64_t       extism_load_u64(uint64_t addr);
/* Bytes held by host-managed memory in this call. */
BUNTIME_IMPORT("memory_bytes")  uint64_t       extism_memory_bytes(void);
/* Free every block and clear the output and the error, as at the start of a
 * call (the input is kept). Every handle becomes invalid. */
BUNTIME_IMPORT("reset")         void           extism_reset(void);

/* Result of the current call. */
BUNTIME_IMPORT("output_set")    void           extism_output_set(uint64_t addr, uint64_t len);
BUNTIME_IMPORT("output_length") uint64_t       extism_output_length(void);
BUNTIME_IMPORT("output_offset") uint64_t       extism_output_offset(void);
BUNTIME_IMPORT("error_set")     void           extism_error_set(buntime_handle h);
BUNTIME_IMPORT("error_get")     buntime_handle extism_error_get(void);

/* Configuration (read-only) and per-instance variables. Keys and values are
 * blocks; the host frees the key block. var_set(key, 0) removes the
 * variable. */
BUNTIME_IMPORT("config_get") buntime_handle extism_config_get(buntime_handle key);
BUNTIME_IMPORT("var_get")    buntime_handle extism_var_get(buntime_handle key);
BUNTIME_IMPORT("var_set")    void           extism_var_set(buntime_handle key, buntime_handle value);

/* Logging: each takes the handle of a block holding the message text, which
 * the host frees. */
BUNTIME_IMPORT("log_trace")     void    extism_log_trace(buntime_handle msg);
BUNTIME_IMPORT("log_debug")     void    extism_log_debug(buntime_handle msg);
BUNTIME_IMPORT("log_info")      void    extism_log_info(buntime_handle msg);
BUNTIME_IMPORT("log_warn")      void    extism_log_warn(buntime_handle msg);
BUNTIME_IMPORT("log_error")     void    extism_log_error(buntime_handle msg);
BUNTIME_IMPORT("get_log_level") int32_t extism_get_log_level(void);

/* HTTP: `req` is a block holding a JSON request description, `body` a block
 * (or 0); both are freed by the host. Returns the response body's handle (0
 * if empty). Status and headers (a JSON object, as a new block) describe the
 * last response of the current call. */
BUNTIME_IMPORT("http_request")     buntime_handle extism_http_request(buntime_handle req,
                                                                      buntime_handle body);
BUNTIME_IMPORT("http_status_code") int32_t        extism_http_status_code(void);
BUNTIME_IMPORT("http_headers")     buntime_handle extism_http_headers(void);

/* ------------------------------------------------------------------------ */
/* Host imports: extism:host/user (Buntime's app body functions)            */
/* ------------------------------------------------------------------------ */

#define BUNTIME_USER_IMPORT(name) \
    __attribute__((import_module("extism:host/user"), import_name(name)))

/* A new block holding the HTTP request body of the current app call; 0 if the
 * body is empty. Traps if it does not fit in the guest's memory limit. */
BUNTIME_USER_IMPORT("buntime_request_body")
uint64_t buntime_request_body(void);

/* A new block holding the current request's client as JSON
 * ({"peer","address","scheme","host"?}, docs/abi.md §9); 0 for a request
 * served in process. Only modules that import it are handed the client. */
BUNTIME_USER_IMPORT("buntime_request_client")
uint64_t buntime_request_client(void);

/* Append the bytes of block h to the response body; returns 0. Does not free
 * h. Traps if h is not a block (so never pass 0). */
BUNTIME_USER_IMPORT("buntime_response_body_write")
uint64_t buntime_response_body_write(uint64_t h);

/* ------------------------------------------------------------------------ */
/* Status codes of the helpers                                              */
/* ------------------------------------------------------------------------ */

#define BUNTIME_OK              0
/* Config and var getters: no such key (or an empty value, or a value the
 * host could not fit in memory; the ABI does not tell these apart). */
#define BUNTIME_ERR_MISSING   (-1)
/* alloc returned 0: the guest's memory limit leaves no room. */
#define BUNTIME_ERR_NO_MEMORY (-2)
/* An empty key or error message: the ABI cannot carry one. */
#define BUNTIME_ERR_EMPTY     (-3)

/* ------------------------------------------------------------------------ */
/* Tiny freestanding replacements for libc                                  */
/* ------------------------------------------------------------------------ */

static inline uint64_t buntime_strlen(const char *s)
{
    uint64_t n = 0;
    while (s[n]) n++;
    return n;
}

static inline void buntime_memcpy(void *dst, const void *src, uint64_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    /* volatile keeps the compiler from turning the loop into a memcpy()
     * call, which does not exist without libc. */
    for (uint64_t i = 0; i < n; i++) ((volatile uint8_t *)d)[i] = s[i];
}

/* Unaligned little-endian 8-byte access in linear memory (wasm is LE). */
static inline uint64_t buntime__get64(const uint8_t *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, 8); /* constant size: lowered to one i64.load */
    return v;
}

static inline void buntime__put64(uint8_t *p, uint64_t v)
{
    __builtin_memcpy(p, &v, 8);
}

/* ------------------------------------------------------------------------ */
/* Input                                                                    */
/* ------------------------------------------------------------------------ */

static inline uint64_t buntime_input_length(void)
{
    return extism_input_length();
}

/* Copy the call's input into buf (at most cap bytes), 8 bytes at a time and
 * then byte by byte. Returns the number of bytes copied. */
static inline uint64_t buntime_input_read(uint8_t *buf, uint64_t cap)
{
    uint64_t n = extism_input_length();
    uint64_t i = 0;
    if (n > cap) n = cap;
    for (; i + 8 <= n; i += 8) buntime__put64(buf + i, extism_input_load_u64(i));
    for (; i < n; i++) buf[i] = (uint8_t)extism_input_load_u8(i);
    return n;
}

/* Copy input[0..n) into the block memory at dst (host to host, no guest
 * buffer). dst must be a block of at least n bytes (or an address inside
 * one): a store to 0 traps. */
static inline void buntime_input_copy_to(buntime_handle dst, uint64_t n)
{
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) extism_store_u64(dst + i, extism_input_load_u64(i));
    for (; i < n; i++) extism_store_u8(dst + i, extism_input_load_u8(i));
}

/* A new block holding a copy of the whole input; 0 if the input is empty or
 * does not fit (compare buntime_input_length() with 0 to tell which). */
static inline buntime_handle buntime_input_handle(void)
{
    uint64_t n = extism_input_length();
    buntime_handle h = extism_alloc(n);
    if (h != 0) buntime_input_copy_to(h, n);
    return h;
}

/* ------------------------------------------------------------------------ */
/* Host memory                                                              */
/* ------------------------------------------------------------------------ */

/* Write n bytes from buf into the block memory starting at addr. */
static inline void buntime_store(uint64_t addr, const void *buf, uint64_t n)
{
    const uint8_t *p = (const uint8_t *)buf;
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) extism_store_u64(addr + i, buntime__get64(p + i));
    for (; i < n; i++) extism_store_u8(addr + i, p[i]);
}

/* Read n bytes from the block memory starting at addr into buf. */
static inline void buntime_load(uint64_t addr, void *buf, uint64_t n)
{
    uint8_t *p = (uint8_t *)buf;
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) buntime__put64(p + i, extism_load_u64(addr + i));
    for (; i < n; i++) p[i] = (uint8_t)extism_load_u8(addr + i);
}

/* Allocate a block, copy n bytes into it and return its handle; 0 (nothing
 * stored) if n is 0 or the memory limit leaves no room. */
static inline buntime_handle buntime_alloc_bytes(const void *buf, uint64_t n)
{
    buntime_handle h = extism_alloc(n);
    if (h != 0) buntime_store(h, buf, n);
    return h;
}

static inline buntime_handle buntime_alloc_cstr(const char *s)
{
    return buntime_alloc_bytes(s, buntime_strlen(s));
}

/* ------------------------------------------------------------------------ */
/* Output and errors                                                        */
/* ------------------------------------------------------------------------ */

/* Make a whole block the call's output (h == 0: empty output). */
static inline void buntime_output_handle(buntime_handle h)
{
    extism_output_set(h, extism_length(h));
}

/* Set the call's output to buf[0..n). BUNTIME_OK, or BUNTIME_ERR_NO_MEMORY
 * (the output is then left as it was). n == 0 sets an empty output. */
static inline int32_t buntime_output_bytes(const void *buf, uint64_t n)
{
    buntime_handle h;
    if (n == 0) {
        extism_output_set(0, 0);
        return BUNTIME_OK;
    }
    h = buntime_alloc_bytes(buf, n);
    if (h == 0) return BUNTIME_ERR_NO_MEMORY;
    extism_output_set(h, n);
    return BUNTIME_OK;
}

static inline int32_t buntime_output_cstr(const char *s)
{
    return buntime_output_bytes(s, buntime_strlen(s));
}

/* Set the call's error message; the export should then return non-zero.
 * BUNTIME_OK; BUNTIME_ERR_EMPTY for an empty message (error_set(0) would
 * clear the error instead); BUNTIME_ERR_NO_MEMORY if it does not fit. On
 * failure no error is set, so a non-zero return code alone reports it. */
static inline int32_t buntime_error_bytes(const void *buf, uint64_t n)
{
    buntime_handle h;
    if (n == 0) return BUNTIME_ERR_EMPTY;
    h = buntime_alloc_bytes(buf, n);
    if (h == 0) return BUNTIME_ERR_NO_MEMORY;
    extism_error_set(h);
    return BUNTIME_OK;
}

static inline int32_t buntime_error_cstr(const char *msg)
{
    return buntime_error_bytes(msg, buntime_strlen(msg));
}

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

/* Numbered like the result of extism_get_log_level() (trace 0 .. error 4):
 * the host records a message whose level is >= that value. */
typedef enum {
    BUNTIME_LOG_TRACE = 0,
    BUNTIME_LOG_DEBUG = 1,
    BUNTIME_LOG_INFO = 2,
    BUNTIME_LOG_WARN = 3,
    BUNTIME_LOG_ERROR = 4
} buntime_log_level;

/* Log the block msg (which the host frees; must not be 0). */
static inline void buntime_log_handle(buntime_log_level level, buntime_handle msg)
{
    switch (level) {
    case BUNTIME_LOG_TRACE: extism_log_trace(msg); break;
    case BUNTIME_LOG_DEBUG: extism_log_debug(msg); break;
    case BUNTIME_LOG_INFO:  extism_log_info(msg);  break;
    case BUNTIME_LOG_WARN:  extism_log_warn(msg);  break;
    default:                extism_log_error(msg); break;
    }
}

/* Log a NUL-terminated message at the given level. BUNTIME_OK (an empty
 * message logs nothing) or BUNTIME_ERR_NO_MEMORY. */
static inline int32_t buntime_log(buntime_log_level level, const char *msg)
{
    buntime_handle h;
    if (msg[0] == 0) return BUNTIME_OK;
    h = buntime_alloc_cstr(msg);
    if (h == 0) return BUNTIME_ERR_NO_MEMORY;
    buntime_log_handle(level, h);
    return BUNTIME_OK;
}

/* ------------------------------------------------------------------------ */
/* Config and variables                                                     */
/* ------------------------------------------------------------------------ */

/* Shared by config/var getters: copy the block at h into buf (at most cap
 * bytes) and free it. Returns its full length, or BUNTIME_ERR_MISSING if h is
 * 0 or an empty block. Like the other Extism PDKs, an empty value is reported
 * as missing (hosts may represent an empty value by handle 0). */
static inline int64_t buntime__read_value(buntime_handle h, void *buf, uint64_t cap)
{
    uint64_t n;
    if (h == 0) return BUNTIME_ERR_MISSING;
    n = extism_length(h);
    if (n == 0) return BUNTIME_ERR_MISSING;
    buntime_load(h, buf, n < cap ? n : cap);
    extism_free(h);
    return (int64_t)n;
}

/* Allocates the key block for a getter or setter; 0 with *status set if the
 * key is empty or does not fit. */
static inline buntime_handle buntime__key(const void *key, uint64_t key_len, int32_t *status)
{
    buntime_handle k;
    if (key_len == 0) {
        *status = BUNTIME_ERR_EMPTY;
        return 0;
    }
    k = buntime_alloc_bytes(key, key_len);
    *status = k == 0 ? BUNTIME_ERR_NO_MEMORY : BUNTIME_OK;
    return k;
}

/* Config value of key[0..key_len) into buf. Returns the value's full length
 * (which may exceed cap: only cap bytes are copied) or a negative status:
 * BUNTIME_ERR_MISSING, BUNTIME_ERR_EMPTY (empty key) or
 * BUNTIME_ERR_NO_MEMORY (the key does not fit). */
static inline int64_t buntime_config_get(const void *key, uint64_t key_len,
                                         void *buf, uint64_t cap)
{
    int32_t status;
    buntime_handle k = buntime__key(key, key_len, &status);
    if (k == 0) return status;
    return buntime__read_value(extism_config_get(k), buf, cap);
}

/* Same as buntime_config_get, for a per-instance variable. */
static inline int64_t buntime_var_get(const void *key, uint64_t key_len,
                                      void *buf, uint64_t cap)
{
    int32_t status;
    buntime_handle k = buntime__key(key, key_len, &status);
    if (k == 0) return status;
    return buntime__read_value(extism_var_get(k), buf, cap);
}

/* Set variable key[0..key_len) to value[0..value_len); an empty value removes
 * it. BUNTIME_OK, BUNTIME_ERR_EMPTY (empty key) or BUNTIME_ERR_NO_MEMORY (the
 * variable is then unchanged). The host traps if vars are disabled or the
 * store would exceed its cap. */
static inline int32_t buntime_var_set(const void *key, uint64_t key_len,
                                      const void *value, uint64_t value_len)
{
    int32_t status;
    buntime_handle v = 0;
    buntime_handle k = buntime__key(key, key_len, &status);
    if (k == 0) return status;
    if (value_len != 0) {
        v = buntime_alloc_bytes(value, value_len);
        if (v == 0) {
            extism_free(k);
            return BUNTIME_ERR_NO_MEMORY;
        }
    }
    extism_var_set(k, v);
    return BUNTIME_OK;
}

/* Remove variable key[0..key_len). BUNTIME_OK, BUNTIME_ERR_EMPTY or
 * BUNTIME_ERR_NO_MEMORY. */
static inline int32_t buntime_var_remove(const void *key, uint64_t key_len)
{
    return buntime_var_set(key, key_len, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* App bodies (extism:host/user; only in hosts that serve apps)             */
/* ------------------------------------------------------------------------ */

/* Append buf[0..n) to the response body. BUNTIME_OK (n == 0 writes nothing)
 * or BUNTIME_ERR_NO_MEMORY. */
static inline int32_t buntime_response_body_bytes(const void *buf, uint64_t n)
{
    buntime_handle h;
    if (n == 0) return BUNTIME_OK;
    h = buntime_alloc_bytes(buf, n);
    if (h == 0) return BUNTIME_ERR_NO_MEMORY;
    buntime_response_body_write(h);
    extism_free(h);
    return BUNTIME_OK;
}

#ifdef __cplusplus
}
#endif

#endif /* BUNTIME_H */
