package bpf

// The object is built for little-endian targets only and committed, so
// `go build` needs no clang. Regenerate with `go generate ./bpf/`.
//go:generate go tool bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror" moat xdp.c -- -I/usr/include/x86_64-linux-gnu
