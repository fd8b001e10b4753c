/* Its own translation unit: runtime/memory.c is built with Py_BUILD_CORE,
 * which the rest of the runtime must not see. */
#include "../runtime/memory.c"
