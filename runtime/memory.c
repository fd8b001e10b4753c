/* How much memory an interpreter's own object allocator holds.
 *
 * CPython counts pymalloc arenas per interpreter but offers no public call
 * for it: sys.getallocatedblocks() adds up every interpreter of the process,
 * and _PyInterpreterState_GetAllocatedBlocks is not exported from a shared
 * libpython (and walks pools another thread may be freeing). The arena count
 * is one word in the interpreter's allocator state, which the internal
 * headers of the very Python we compile against lay out; reading it takes
 * no GIL, so a scrape never waits for Python. This is the only file built
 * with Py_BUILD_CORE, and so the only one that sees those headers. */
#define Py_BUILD_CORE 1
#include "vivarium.h"

#include "internal/pycore_interp_structs.h"
#include "internal/pycore_obmalloc.h"

size_t vv_interp_arena_bytes(const vv_interp *in)
{
#if defined(WITH_PYMALLOC) && !defined(Py_GIL_DISABLED)
    struct _obmalloc_state *state = in->state->obmalloc;
    if (state == NULL)
        return 0;
    /* Written under the interpreter's GIL; a torn read is impossible for an
     * aligned word, and a stale one is what a sample is. */
    size_t n = __atomic_load_n(&state->mgmt.narenas_currently_allocated, __ATOMIC_RELAXED);
    return n * (size_t)ARENA_SIZE;
#else
    (void)in;
    return 0;
#endif
}
