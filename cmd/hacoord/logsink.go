package main

import (
	"io"

	"github.com/hacoord/hacoord/internal/logsink"
)

// logSink is a log writer that never blocks the logger (logsink.Sink).
type logSink = logsink.Sink

// logSinkFlush bounds how long Sync and Close wait for the queue to drain.
const logSinkFlush = logsink.Flush

// newLogSink returns a logSink writing to w; Close ends it.
func newLogSink(w io.Writer) *logSink { return logsink.New(w) }
