package nft

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/testutil"
	"github.com/moatsec/moat/internal/unix"
)

// TestBatchErrors: the kernel's answer to a failing message comes back as
// the commit's error, nothing of the batch is applied, and the backend
// keeps working.
func TestBatchErrors(t *testing.T) {
	ns := testutil.NewNetNS(t)
	b := openIn(t, ns, Config{NetNS: nsFD(t, ns)})
	ok := netip.MustParseAddr("198.18.0.1")
	missing := &nftables.Set{Table: b.table, Name: "no_such_set", KeyType: nftables.TypeIPAddr}

	tx := b.newTxn(context.Background())
	b.queueSingles(tx, true, b.single[fam4], []pending{{addr: ok, expiry: time.Now().Add(time.Hour)}}, 0)
	b.queueSingles(tx, true, missing, []pending{{addr: ok, expiry: time.Now().Add(time.Hour)}}, 0)
	err := tx.finish("test")
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("commit into a missing set: %v, want ENOENT", err)
	}
	if got := list(t, b); len(got) != 0 {
		t.Fatalf("a failed batch left %v in the kernel", got)
	}

	apply(t, b, enforce.Diff{Set: []enforce.Entry{entry("198.18.0.1/32", time.Now().Add(time.Hour))}})
	if got := list(t, b); len(got) != 1 || got[0].Prefix.Addr() != ok {
		t.Fatalf("after the failed batch the set holds %v, want 198.18.0.1", got)
	}
}

// TestReadAcks decodes the kernel's answers to a batch: acks, errors, and
// malformed input without a panic.
func TestReadAcks(t *testing.T) {
	msg := func(code int32) []byte {
		var w batch
		at := w.header(unix.NLMSG_ERROR, 0, 0, 0)
		w.buf = w.buf[:at+nlmsgHdrLen] // drop the nfgenmsg: an error carries errno + header
		w.buf = append(w.buf, byte(code), byte(code>>8), byte(code>>16), byte(code>>24))
		w.buf = append(w.buf, make([]byte, nlmsgHdrLen)...)
		w.closeMsg(at)
		return w.buf
	}
	in := append(append(msg(0), msg(-int32(unix.ENOENT))...), msg(0)...)
	acks, errs, err := readAcks(in)
	if err != nil || acks != 2 || len(errs) != 1 || !errors.Is(errs[0], unix.ENOENT) {
		t.Fatalf("readAcks = %d acks, %v, %v; want 2 acks and ENOENT", acks, errs, err)
	}
	if _, _, err := readAcks(in[:len(in)-3]); err == nil {
		t.Fatal("a truncated message was not reported")
	}
}
