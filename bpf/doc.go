// Package bpf loads moat's XDP ban filter (xdp.c), pins its maps and links
// under a bpffs directory so that bans and the attachment outlive the daemon,
// and hides the kernel key formats behind netip.Prefix.
//
// It is the only package of moat that imports github.com/cilium/ebpf.
// Expiries here are CLOCK_BOOTTIME nanoseconds, the clock the program reads;
// converting from wall-clock time is the caller's business.
package bpf
