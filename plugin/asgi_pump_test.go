package plugin

import (
	"sync"
	"testing"
)

func TestRequestsArrivingTogetherSpreadOverIdleLoops(t *testing.T) {
	const n = 8
	var loops []*loop
	a := &app{cfg: appConfig{maxQueue: 100}}
	for range n {
		l := &loop{}
		l.serving.Store(true)
		loops = append(loops, l)
		a.interps = append(a.interps, &interpreter{loop: l})
	}
	for round := 0; round < 2000; round++ {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, err := a.pickLoop(); err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		for i, l := range loops {
			if got := l.active.Load(); got != 1 {
				t.Fatalf("round %d: %d requests at once on %d idle loops put %d on loop %d", round, n, n, got, i)
			}
			l.active.Store(0)
		}
	}
}
