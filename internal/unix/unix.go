// Package unix is moat's one door to golang.org/x/sys/unix: the constants,
// types and system calls the BPF loader and the netlink code use, and no
// more. Keeping raw system calls behind one small package (as cilium/ebpf
// keeps them behind its internal/unix) makes them easy to audit, and a
// guard test holds every other package to it.
package unix

import "golang.org/x/sys/unix"

// Netlink, nftables, socket and BPF constants.
const (
	AF_NETLINK                  = unix.AF_NETLINK
	AF_UNSPEC                   = unix.AF_UNSPEC
	BPF_FS_MAGIC                = unix.BPF_FS_MAGIC
	BPF_STATS_RUN_TIME          = unix.BPF_STATS_RUN_TIME
	CLOCK_BOOTTIME              = unix.CLOCK_BOOTTIME
	ETH_P_IP                    = unix.ETH_P_IP
	ETH_P_IPV6                  = unix.ETH_P_IPV6
	IFNAMSIZ                    = unix.IFNAMSIZ
	MSG_DONTWAIT                = unix.MSG_DONTWAIT
	NETLINK_NETFILTER           = unix.NETLINK_NETFILTER
	NFNETLINK_V0                = unix.NFNETLINK_V0
	NFNL_MSG_BATCH_BEGIN        = unix.NFNL_MSG_BATCH_BEGIN
	NFNL_MSG_BATCH_END          = unix.NFNL_MSG_BATCH_END
	NFNL_SUBSYS_NFTABLES        = unix.NFNL_SUBSYS_NFTABLES
	NFPROTO_IPV4                = unix.NFPROTO_IPV4
	NFPROTO_IPV6                = unix.NFPROTO_IPV6
	NFTA_DATA_VALUE             = unix.NFTA_DATA_VALUE
	NFTA_LIST_ELEM              = unix.NFTA_LIST_ELEM
	NFTA_SET_ELEM_EXPIRATION    = unix.NFTA_SET_ELEM_EXPIRATION
	NFTA_SET_ELEM_FLAGS         = unix.NFTA_SET_ELEM_FLAGS
	NFTA_SET_ELEM_KEY           = unix.NFTA_SET_ELEM_KEY
	NFTA_SET_ELEM_LIST_ELEMENTS = unix.NFTA_SET_ELEM_LIST_ELEMENTS
	NFTA_SET_ELEM_LIST_SET      = unix.NFTA_SET_ELEM_LIST_SET
	NFTA_SET_ELEM_LIST_TABLE    = unix.NFTA_SET_ELEM_LIST_TABLE
	NFTA_SET_ELEM_TIMEOUT       = unix.NFTA_SET_ELEM_TIMEOUT
	NFT_MSG_DELSETELEM          = unix.NFT_MSG_DELSETELEM
	NFT_MSG_GETGEN              = unix.NFT_MSG_GETGEN
	NFT_MSG_GETSETELEM          = unix.NFT_MSG_GETSETELEM
	NFT_MSG_NEWSETELEM          = unix.NFT_MSG_NEWSETELEM
	NFT_SET_ELEM_INTERVAL_END   = unix.NFT_SET_ELEM_INTERVAL_END
	NLA_ALIGNTO                 = unix.NLA_ALIGNTO
	NLA_F_NESTED                = unix.NLA_F_NESTED
	NLA_F_NET_BYTEORDER         = unix.NLA_F_NET_BYTEORDER
	NLA_HDRLEN                  = unix.NLA_HDRLEN
	NLMSG_ALIGNTO               = unix.NLMSG_ALIGNTO
	NLMSG_DONE                  = unix.NLMSG_DONE
	NLMSG_ERROR                 = unix.NLMSG_ERROR
	NLM_F_ACK                   = unix.NLM_F_ACK
	NLM_F_CREATE                = unix.NLM_F_CREATE
	NLM_F_REQUEST               = unix.NLM_F_REQUEST
	SOL_SOCKET                  = unix.SOL_SOCKET
	SO_RCVBUFFORCE              = unix.SO_RCVBUFFORCE
	SO_SNDBUFFORCE              = unix.SO_SNDBUFFORCE
	SizeofNlAttr                = unix.SizeofNlAttr
	SizeofNlMsghdr              = unix.SizeofNlMsghdr
)

// Errnos, compared with errors.Is.
const (
	E2BIG           = unix.E2BIG
	EAFNOSUPPORT    = unix.EAFNOSUPPORT
	EAGAIN          = unix.EAGAIN
	EEXIST          = unix.EEXIST
	ENOENT          = unix.ENOENT
	ENOSPC          = unix.ENOSPC
	ENOTEMPTY       = unix.ENOTEMPTY
	EOPNOTSUPP      = unix.EOPNOTSUPP
	EPROTONOSUPPORT = unix.EPROTONOSUPPORT
)

type (
	Errno           = unix.Errno
	Sockaddr        = unix.Sockaddr
	SockaddrNetlink = unix.SockaddrNetlink
	Statfs_t        = unix.Statfs_t
	Timespec        = unix.Timespec
)

func ClockGettime(clockid int32, ts *Timespec) error { return unix.ClockGettime(clockid, ts) }

func Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

func Recvfrom(fd int, p []byte, flags int) (n int, from Sockaddr, err error) {
	return unix.Recvfrom(fd, p, flags)
}

func Sendto(fd int, p []byte, flags int, to Sockaddr) error { return unix.Sendto(fd, p, flags, to) }

func SetsockoptInt(fd, level, opt, value int) error { return unix.SetsockoptInt(fd, level, opt, value) }

func Statfs(path string, buf *Statfs_t) error { return unix.Statfs(path, buf) }
