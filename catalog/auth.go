package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// A manifest is plaintext, so that listing and delta planning need no
// identity, and anyone who can write to the bucket can change it: point a
// restore at other parts, swap a part of another backup in (with its
// checksum), or claim the backup is not encrypted and name plaintext parts
// of their making. On an encrypted repository, backup-push therefore also
// writes the manifest's authenticator (TRAPS.md 29): the SHA-256 of the
// manifest as written, encrypted to the repository's recipients, at
// backups/<name>/manifest-auth.<codec>[.age]. Someone without the
// recipients cannot make a new one, and one copied from another backup
// names that backup. backup-fetch and backup-verify check it on every
// backup they read from an encrypted repository, and refuse a backup whose
// manifest does not match it or that has none. The "permanent" flag is
// left out of the digest (it is set to false before hashing), so that
// backup-mark, which has only to rewrite that one value, need not rewrite
// the authenticator; a changed flag only changes what retention keeps. On
// a repository without encryption there is no secret to authenticate with;
// manifests there are protected by nothing but the bucket's permissions.

// authBase is the key of a backup's authenticator without its suffix.
func authBase(name string) string { return repo.BackupsPrefix + name + "/manifest-auth" }

// authenticator is the plaintext of an authenticator object.
type authenticator struct {
	Backup         string `json:"backup"`
	ManifestSHA256 string `json:"manifest_sha256"`
}

// ErrNoAuthenticator means a backup of an encrypted repository has no
// manifest authenticator: written by a walrus older than authenticators,
// or removed.
var ErrNoAuthenticator = errors.New("the backup's manifest has no authenticator")

// ErrManifestTampered means a manifest does not match its authenticator.
var ErrManifestTampered = errors.New("the backup's manifest does not match its authenticator")

// manifestDigest is the SHA-256 of raw, a manifest as stored, with its
// "permanent" value taken as false.
func manifestDigest(raw []byte) string {
	h := sha256.New()
	if i := permanentAt(raw, true); i >= 0 {
		h.Write(raw[:i])
		h.Write(permanentLine(false))
		h.Write(raw[i+len(permanentLine(true)):])
	} else {
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WriteAuthenticator stores the authenticator of m, encoded (compressed,
// encrypted) by enc. It is written before the manifest
// (WriteManifest encodes m to the same bytes), so that every listed
// backup of an encrypted repository has one.
// It returns the key written.
func WriteAuthenticator(ctx context.Context, st storage.Store, enc *repo.Encoder, m *Manifest) (string, error) {
	if m.Permanent {
		return "", errors.New("write manifest authenticator: a new backup is never permanent")
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return "", fmt.Errorf("write manifest authenticator: %w", err)
	}
	body, _ := json.Marshal(authenticator{Backup: m.Name, ManifestSHA256: manifestDigest(buf.Bytes())})
	// Not create-only: each encryption of the same body differs, so a
	// retried upload whose first attempt was stored (its answer lost)
	// could not tell its own object from another; the name is the
	// backup's own, and the manifest, written next, is create-only.
	w, err := enc.Put(ctx, st, authBase(m.Name), bytes.NewReader(body), storage.PutOptions{})
	if err != nil {
		return "", fmt.Errorf("write manifest authenticator of %s: %w", m.Name, err)
	}
	return w.Key, nil
}

// CheckAuthenticator checks the manifest of backup name against its
// authenticator, which dec decrypts. It returns an error wrapping
// ErrNoAuthenticator when there is none, ErrManifestTampered when it does
// not match (or is not encrypted, or names another backup), repo's
// ErrNoIdentity when dec cannot decrypt.
func CheckAuthenticator(ctx context.Context, st storage.Store, dec *repo.Decoder, name string) error {
	info, err := repo.FindObject(ctx, st, authBase(name), "")
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("backup %s: %w", name, ErrNoAuthenticator)
	}
	if err != nil {
		return fmt.Errorf("backup %s: find its manifest authenticator: %w", name, err)
	}
	if !strings.HasSuffix(info.Key, ".age") {
		return fmt.Errorf("backup %s: %w: %s is not encrypted", name, ErrManifestTampered, info.Key)
	}
	rc, err := dec.Open(ctx, st, info.Key)
	if err != nil {
		return fmt.Errorf("backup %s: read %s: %w", name, info.Key, err)
	}
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	rc.Close()
	if err != nil {
		return fmt.Errorf("backup %s: read %s: %w", name, info.Key, err)
	}
	var a authenticator
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("backup %s: %w: %s does not parse: %v", name, ErrManifestTampered, info.Key, err)
	}
	if a.Backup != name {
		return fmt.Errorf("backup %s: %w: %s is the authenticator of backup %q", name, ErrManifestTampered, info.Key, a.Backup)
	}
	key := repo.ManifestKey(name)
	mrc, err := st.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("backup %s: read %s: %w", name, key, err)
	}
	raw, err := io.ReadAll(mrc)
	mrc.Close()
	if err != nil {
		return fmt.Errorf("backup %s: read %s: %w", name, key, err)
	}
	if got := manifestDigest(raw); got != a.ManifestSHA256 {
		return fmt.Errorf("backup %s: %w: %s has SHA-256 %.16s…, the authenticator written with the backup says %.16s…", name, ErrManifestTampered, key, got, a.ManifestSHA256)
	}
	return nil
}

// AuthenticateChain checks the authenticator of every backup of links (a
// chain, as ReadChain returns it) when the repository is encrypted (its
// walrus.json says so, or a manifest of the chain does), and reports
// whether it did. allowMissing accepts backups without one (see
// ErrNoAuthenticator), never one that does not match.
func AuthenticateChain(ctx context.Context, st storage.Store, dec *repo.Decoder, links []*Manifest, allowMissing bool) (bool, error) {
	encrypted, err := encryptedRepository(ctx, st, links)
	if err != nil || !encrypted {
		return false, err
	}
	for _, l := range links {
		err := CheckAuthenticator(ctx, st, dec, l.Name)
		if err != nil && !(allowMissing && errors.Is(err, ErrNoAuthenticator)) {
			return true, err
		}
	}
	return true, nil
}

// encryptedRepository reports whether a manifest of links, or the
// repository's walrus.json, says the repository is encrypted. A tamperer
// must change both to pass a backup off as unencrypted.
func encryptedRepository(ctx context.Context, st storage.Store, links []*Manifest) (bool, error) {
	for _, l := range links {
		if l.Encrypted {
			return true, nil
		}
	}
	id, err := repo.ReadIdentity(ctx, st)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return id.Encrypted, nil
}
