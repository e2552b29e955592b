package s3_test

import (
	"testing"

	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/s3"
	"github.com/walrusdb/walrus/storage/storagetest"
)

// newStore returns a Store on a fresh bucket of srv, with the smallest part
// size so that the suite's large objects go multipart.
func newStore(t *testing.T, srv *s3test.Server, prefix string) *s3.Store {
	t.Helper()
	st, err := s3.New(t.Context(), s3.Config{
		Bucket:          srv.NewBucket(t),
		Prefix:          prefix,
		Endpoint:        srv.Endpoint,
		Region:          srv.Region,
		ForcePathStyle:  true,
		AccessKeyID:     srv.AccessKey,
		SecretAccessKey: srv.SecretKey,
		PartSize:        s3.MinPartSize,
		Concurrency:     3,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return st
}

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t, srv, "walrus/repo") })
}

func TestConformanceNoPrefix(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t, srv, "") })
}
