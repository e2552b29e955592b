package mem_test

import (
	"testing"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
	"github.com/walrusdb/walrus/storage/storagetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Store {
		st := mem.New()
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return st
	})
}
