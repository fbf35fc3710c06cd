package zk

// SetSessionHook makes e call f with the id and password of every session it establishes, so a test
// can close the session from outside (zktest.CloseSession), the way a crash or expiry would end it.
// Call it before Run.
func SetSessionHook(e *Elector, f func(id int64, passwd []byte)) { e.onSession = f }

// LoseNextCreateReply makes e's next candidate create behave as if its reply was lost after the
// server applied it.
func LoseNextCreateReply(e *Elector) { e.loseCreateReply.Store(true) }
