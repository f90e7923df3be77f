// Package enforce turns decisions into kernel state. It holds the reconciler,
// the single writer of kernel state, and the small interface its backends
// (nft, xdp) implement; the store, profiles and local API live in
// subpackages.
package enforce
