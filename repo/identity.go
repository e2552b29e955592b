package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/walrusdb/walrus/storage"
)

// IdentityKey is the key of the repository identity file.
const IdentityKey = "walrus.json"

// FormatVersion is the repository format this walrus writes.
const FormatVersion = 1

// Identity is the content of walrus.json.
type Identity struct {
	FormatVersion int `json:"format_version"`
	// SystemIdentifier is the cluster's system identifier as a decimal
	// string (JSON numbers lose precision above 2^53).
	SystemIdentifier string    `json:"system_identifier"`
	Encrypted        bool      `json:"encrypted"`
	CreatedAt        time.Time `json:"created_at"`
}

// ErrForeignCluster means the repository belongs to another cluster.
var ErrForeignCluster = errors.New("repository belongs to another cluster")

// ErrEncryptionMismatch means the encryption setting disagrees with the
// repository.
var ErrEncryptionMismatch = errors.New("encryption setting does not match the repository")

// ReadIdentity reads walrus.json. A missing file gives storage.ErrNotFound.
func ReadIdentity(ctx context.Context, st storage.Store) (Identity, error) {
	rc, err := st.Get(ctx, IdentityKey)
	if err != nil {
		return Identity{}, fmt.Errorf("read %s: %w", IdentityKey, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return Identity{}, fmt.Errorf("read %s: %w", IdentityKey, err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, fmt.Errorf("parse %s: %w: the repository's identity file is damaged", IdentityKey, err)
	}
	if id.FormatVersion < 1 || id.FormatVersion > FormatVersion {
		return Identity{}, fmt.Errorf("%s: repository format %d is not supported by this walrus (supports %d): upgrade walrus", IdentityKey, id.FormatVersion, FormatVersion)
	}
	if n, err := strconv.ParseUint(id.SystemIdentifier, 10, 64); err != nil || strconv.FormatUint(n, 10) != id.SystemIdentifier {
		return Identity{}, fmt.Errorf("%s: bad system_identifier %q (want the decimal number PostgreSQL prints): the repository's identity file is damaged", IdentityKey, id.SystemIdentifier)
	}
	return id, nil
}

// EnsureIdentity makes sure the repository belongs to cluster sysid and is
// encrypted exactly when encrypted is true. The first writer creates
// walrus.json (create-only, so two first writers cannot both win).
func EnsureIdentity(ctx context.Context, st storage.Store, sysid uint64, encrypted bool) (Identity, error) {
	want := Identity{FormatVersion: FormatVersion, SystemIdentifier: strconv.FormatUint(sysid, 10), Encrypted: encrypted, CreatedAt: time.Now().UTC()}
	for attempt := 0; attempt < 2; attempt++ {
		id, err := ReadIdentity(ctx, st)
		if err == nil {
			return id, id.Check(sysid, encrypted)
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return Identity{}, err
		}
		b, _ := json.MarshalIndent(want, "", "  ")
		err = st.Put(ctx, IdentityKey, bytes.NewReader(append(b, '\n')), storage.PutOptions{IfNotExists: true, Size: int64(len(b) + 1)})
		if err == nil {
			return want, nil
		}
		if !errors.Is(err, storage.ErrExists) {
			return Identity{}, fmt.Errorf("create %s: %w", IdentityKey, err)
		}
	}
	return Identity{}, fmt.Errorf("create %s: it keeps changing under us", IdentityKey)
}

// Check compares the identity with a cluster and an encryption setting.
func (id Identity) Check(sysid uint64, encrypted bool) error {
	if id.SystemIdentifier != strconv.FormatUint(sysid, 10) {
		return fmt.Errorf("%w: repository is for system identifier %s, this cluster is %d: use a separate repository (or prefix) per cluster", ErrForeignCluster, id.SystemIdentifier, sysid)
	}
	return id.CheckEncryption(encrypted)
}

// CheckEncryption compares only the encryption setting.
func (id Identity) CheckEncryption(encrypted bool) error {
	if id.Encrypted && !encrypted {
		return fmt.Errorf("%w: the repository is encrypted but no recipients are configured: set encryption.recipients (WALRUS_AGE_RECIPIENTS) so nothing is stored in plaintext", ErrEncryptionMismatch)
	}
	if !id.Encrypted && encrypted {
		return fmt.Errorf("%w: the repository holds plaintext objects but encryption is configured: use a new repository for encrypted backups, or remove the encryption settings", ErrEncryptionMismatch)
	}
	return nil
}
