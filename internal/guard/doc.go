// Package guard holds no code, only tests that keep the tree in the shape
// design.md gives it: one package doc per package, x/sys/unix behind one
// internal package, no os/exec outside tests, packaging and the command
// acquisition source, no function over 150 lines, no cmd/moat file over
// 300 lines, and internal/ free of detect and enforce. A rule broken here
// fails the suite, so the shape does not drift one commit at a time.
package guard
