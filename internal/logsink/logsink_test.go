package logsink

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// stuckWriter is a log reader that stops reading (a full pipe to journald) until open is closed.
type stuckWriter struct {
	open chan struct{}
	mu   sync.Mutex
	b    bytes.Buffer
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	<-w.open
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *stuckWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Logging through a Sink never waits for a stuck reader: entries are queued up to a bound, the
// rest dropped and counted, Sync and Close give up after Flush; once the reader reads again,
// the queue comes out in order with a line saying how many entries were lost.
func TestLogSinkNeverBlocksTheLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &stuckWriter{open: make(chan struct{})}
		sink := New(w)
		log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(sink), zap.InfoLevel))
		start := time.Now()
		const n = 20000 // about 3 MB of entries, three times the queue
		for i := range n {
			log.Info("self-fencing: no lease renewal acknowledged before the deadline; letting go", zap.Int("i", i), zap.String("pad", strings.Repeat("x", 64)))
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("logging into a stuck reader took %v", d)
		}
		_ = log.Sync() // bounded
		if d := time.Since(start); d != Flush {
			t.Fatalf("Sync with a stuck reader returned after %v, want %v", d, Flush)
		}
		close(w.open)
		_ = log.Sync()
		synctest.Wait()
		out := w.String()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !strings.Contains(lines[0], `"i":0,`) {
			t.Fatalf("first line %q, want entry 0", lines[0])
		}
		kept := len(lines) - 1
		last := lines[len(lines)-1]
		if want := "log entries dropped"; !strings.Contains(last, want) || !strings.HasPrefix(last, "hacoord: "+strconv.Itoa(n-kept)+" ") {
			t.Fatalf("last line %q, want %d entries dropped (%d kept)", last, n-kept, kept)
		}
		if kept < 1000 || kept >= n {
			t.Fatalf("%d of %d entries kept, want the queue's worth", kept, n)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		log.Info("after close") // dropped, no panic, no block
	})
}

// Close with a reader stuck for good returns after Flush.
func TestLogSinkCloseIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &stuckWriter{open: make(chan struct{})}
		sink := New(w)
		_, _ = sink.Write([]byte("x\n"))
		start := time.Now()
		_ = sink.Close()
		if d := time.Since(start); d != Flush {
			t.Fatalf("Close took %v, want %v", d, Flush)
		}
		close(w.open) // the writer goroutine ends with the Write it was in
		<-sink.done
	})
}
