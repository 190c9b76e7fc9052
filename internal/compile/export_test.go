package compile

// NewStoreUncached is NewStore resolving every Update from scratch, for
// comparing with the cached resolution.
func NewStoreUncached() *Store {
	s := NewStore()
	s.resolve = nil
	return s
}
