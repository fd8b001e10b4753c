package plugin

/*
#include <stdlib.h>
#include "vivarium.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/vivarium-dev/vivarium/pyadapters"
)

// One OS thread owns CPython's main interpreter: it starts Python, and creates
// and ends every app interpreter, one at a time. A thread state must never move
// between OS threads, and Go moves goroutines freely unless one is locked.
var control struct {
	once    sync.Once
	ops     chan func()
	initErr error
	version string
}

// onControlThread runs f on the control thread and waits for it.
func onControlThread(f func()) {
	control.once.Do(func() {
		control.ops = make(chan func())
		started := make(chan struct{})
		go controlLoop(started)
		<-started
	})
	done := make(chan struct{})
	control.ops <- func() { f(); close(done) }
	<-done
}

func controlLoop(started chan<- struct{}) {
	// Never unlocked: the thread ends with the process.
	runtime.LockOSThread()
	var cerr *C.char
	mainSource := C.CString(pyadapters.Main().Code)
	rc := C.vv_runtime_init(mainSource, &cerr)
	C.free(unsafe.Pointer(mainSource))
	if rc != 0 {
		control.initErr = errors.New(takeCString(cerr))
	} else {
		control.version = C.GoString(C.vv_python_version())
	}
	close(started)
	for f := range control.ops {
		f()
	}
}

// takeCString converts and frees a malloc'd C string.
func takeCString(s *C.char) string {
	if s == nil {
		return "unknown error"
	}
	defer C.free(unsafe.Pointer(s))
	return C.GoString(s)
}

// pythonXY is the Python version the binary was built against, like "3.13";
// apps' venvs must be made with it.
var pythonXY = fmt.Sprintf("%d.%d", C.PY_MAJOR_VERSION, C.PY_MINOR_VERSION)
