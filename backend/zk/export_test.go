package zk

// Conn is the connection interface the elector calls, for fault-injecting wrappers in tests.
type Conn = conn

// WrapConn makes e pass each session's connection through f, which also learns the session's id and
// password (so that a test can close the session from outside, as zktest.CloseSession does). Call it
// before Run.
func WrapConn(e *Elector, f func(c Conn, id int64, passwd []byte) Conn) {
	e.wrap = func(c conn, s *session) conn { return f(c, s.id, s.passwd) }
}

// LibraryPings counts the pings go-zookeeper wrote on connections of sessions with their own
// pings (its ticker fired), in this process.
func LibraryPings() int64 { return libPings.Load() }
