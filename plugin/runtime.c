/* cgo compiles only the C files of the Go package's own directory; the runtime
 * lives in runtime/ so that it reads as one part, and is built here. */
#include "../runtime/subinterp.c"
#include "../runtime/worker.c"
#include "../runtime/bridge.c"
#include "../runtime/mainhooks.c"
#include "../runtime/interrupt.c"
#include "../runtime/crash.c"
