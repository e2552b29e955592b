package crypto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
)

// maxKeyFileSize bounds what the key file readers accept.
const maxKeyFileSize = 1 << 20

// GenerateIdentity returns a new X25519 identity ("AGE-SECRET-KEY-1...") and
// its recipient ("age1...").
func GenerateIdentity() (identity, recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", fmt.Errorf("generate identity: %w", err)
	}
	return id.String(), id.Recipient().String(), nil
}

// WriteIdentityFile writes a new X25519 identity to path, in the format of
// age-keygen (a "# created:" and a "# public key:" comment line, then the
// key), and returns its recipient. The file is created with mode 0600 and
// never replaces an existing file; it is fsynced, and so is its directory,
// before WriteIdentityFile returns. On error no file is left behind, except
// one that already existed.
func WriteIdentityFile(path string) (recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", fmt.Errorf("write identity file: generate identity: %w", err)
	}
	recipient = id.Recipient().String()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("write identity file: %w: walrus never overwrites a key; choose another path, or move the old file away if no backup needs it", err)
	}
	if err != nil {
		return "", fmt.Errorf("write identity file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	text := fmt.Sprintf("# created: %s\n# public key: %s\n%s\n", time.Now().Format(time.RFC3339), recipient, id)
	// The umask may have cleared bits of 0600; the owner must still read it.
	if err := f.Chmod(0o600); err != nil {
		return "", fmt.Errorf("write identity file: %w", err)
	}
	if _, err := io.WriteString(f, text); err != nil {
		return "", fmt.Errorf("write identity file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write identity file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write identity file: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return "", fmt.Errorf("write identity file: %w", err)
	}
	return recipient, nil
}

// syncDir makes the creation of a file in dir durable. File systems that
// cannot sync a directory are not an error.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return nil
}

// ReadRecipientsFile reads recipients ("age1...") from path, one per line;
// blank lines and lines starting with "#" are ignored, as are spaces around
// a recipient. Every recipient is checked: an invalid one is an error naming
// the line. A file without any recipient is an error.
func ReadRecipientsFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read recipients file: %w", err)
	}
	defer f.Close()
	var recipients []string
	err = scanKeyLines(f, func(n int, line string) error {
		if _, err := parseRecipient(line); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		recipients = append(recipients, line)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read recipients file %s: %w", path, err)
	}
	if len(recipients) == 0 {
		return nil, fmt.Errorf("read recipients file %s: no recipient in it: add the age1... public key of each identity that may decrypt, one per line", path)
	}
	return recipients, nil
}

// scanKeyLines calls fn with each line of r that is neither blank nor a
// comment, trimmed of surrounding space, and its 1-based line number.
// Errors it makes itself never quote the text read, which may be secret.
func scanKeyLines(r io.Reader, fn func(n int, line string) error) error {
	lr := &io.LimitedReader{R: r, N: maxKeyFileSize + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 4096), maxKeyFileSize)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	if lr.N == 0 {
		return fmt.Errorf("larger than %d bytes: not a key file", maxKeyFileSize)
	}
	return nil
}

// looksSecret reports whether s looks like secret key material of any kind.
func looksSecret(s string) bool {
	u := strings.ToUpper(s)
	return strings.Contains(u, "SECRET-KEY") || strings.Contains(u, "PRIVATE KEY") || strings.HasPrefix(u, "AGE-PLUGIN-")
}

// parseRecipient parses one recipient. Its errors name the recipient, since
// recipients are public, unless the text looks like a secret key.
func parseRecipient(s string) (age.Recipient, error) {
	switch {
	case looksSecret(s):
		return nil, errors.New("this is a secret key (AGE-SECRET-KEY-...), not a recipient: give its public key (age1...), the \"# public key:\" line of the identity file")
	case strings.HasPrefix(s, "age1pq1"):
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("invalid recipient %q: %s: check it was copied whole", s, ageReason(err, s))
		}
		return r, nil
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("invalid recipient %q: %s: check it was copied whole", s, ageReason(err, s))
		}
		return r, nil
	case strings.HasPrefix(s, "ssh-"):
		return nil, fmt.Errorf("invalid recipient %q: SSH keys are not supported: create an age key with walrus keygen", s)
	default:
		return nil, fmt.Errorf("invalid recipient %q: not an age recipient (age1...): create one with walrus keygen", s)
	}
}

// ageReason strips the quoted recipient from an age parse error.
func ageReason(err error, s string) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, fmt.Sprintf("malformed recipient %q: ", s))
	return strings.ReplaceAll(msg, s, "…")
}
