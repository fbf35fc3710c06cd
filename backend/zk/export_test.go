package zk

// SetSessionHook makes e call f with the id and password of every session it establishes, so a test
// can close the session from outside (zktest.CloseSession), the way a crash or expiry would end it.
// Call it before Run.
func SetSessionHook(e *Elector, f func(id int64, passwd []byte)) { e.onSession = f }
