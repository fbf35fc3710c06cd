// Package keepalivedconf reads a keepalived.conf (keepalived.conf(5), as keepalived 2.2.7 parses
// it) and converts it into hacoord's configuration (docs/config.md).
//
// It works in three steps, each usable alone:
//
//	nodes, diags, err := Parse(path, ParseOptions{})     // lexer, includes, blocks: an AST with positions
//	kc, diags2 := Interpret(nodes)                        // keepalived's own semantics: defaults, ranges
//	cfg, diags3, err := Convert(kc, ConvertOptions{})     // hacoord's schema, and what does not map
//
// Import runs all three and marshals the result. Every Diagnostic names the file and line it is
// about ("keepalived.conf:12: priority: ..."): Parse and Interpret report what keepalived itself
// would report (an out-of-range value, an unknown keyword, a stray '}'), Convert reports every
// keyword it drops or whose meaning changes in hacoord. Errors are Diagnostics too (*Error): a file
// that cannot be read, an unclosed block, an include cycle, an instance hacoord cannot run.
//
// The package reads files only through an FS, so tests and the fuzz target run on a map of files.
// It imports nothing of hacoord: the output structs mirror the YAML schema key for key.
package keepalivedconf
