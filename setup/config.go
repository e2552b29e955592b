package setup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/crypto"
)

// DefaultConfigPath is where setup puts the walrus configuration of the
// cluster in pgdata when neither --config nor WALRUS_CONFIG names a file:
// next to the data directory, named after it
// (/var/lib/postgresql/15/main → /var/lib/postgresql/15/walrus-main.yaml).
// It is outside the data directory, so base backups do not carry it and a
// restore that replaces the data directory keeps it; it is per cluster,
// so two clusters side by side never share a repository by accident; and
// it is in a directory the server's OS user usually owns.
func DefaultConfigPath(pgdata string) string {
	pgdata = filepath.Clean(pgdata)
	return filepath.Join(filepath.Dir(pgdata), "walrus-"+filepath.Base(pgdata)+".yaml")
}

// identityPath is where setup --encrypt writes a generated age identity:
// next to the configuration, named after it (walrus-main.yaml →
// walrus-main.age.key).
func identityPath(configPath string) string {
	return strings.TrimSuffix(configPath, filepath.Ext(configPath)) + ".age.key"
}

// ConfigResult says what WriteConfig did.
type ConfigResult struct {
	// Path is the configuration file.
	Path string
	// Created is true when WriteConfig wrote it; false when it existed.
	Created bool
	// Owner is the OS user that owns the file ("" when not changed).
	Owner string
	// Config is the configuration the file holds, with the environment
	// applied (what walrus commands run by this user will see).
	Config *config.Config
	// IdentityFile and Recipient are set when an age identity was
	// generated.
	IdentityFile, Recipient string
	// RepoDirCreated is the repository directory created for a filesystem
	// repository, "" when none was.
	RepoDirCreated string
	// Notes are warnings for the operator.
	Notes []string
}

// writeConfig writes the walrus configuration file if none exists at
// o.ConfigPath; an existing file is loaded and left as it is.
func writeConfig(o *Options, pgOwner owner) (*ConfigResult, error) {
	res := &ConfigResult{Path: o.ConfigPath}
	if _, err := os.Stat(o.ConfigPath); err == nil {
		return res, loadExisting(o, pgOwner, res)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("write config %s: %w", o.ConfigPath, err)
	}

	over := map[string]string{"WALRUS_PGDATA": o.PGData}
	if o.Repo != "" {
		over["WALRUS_REPO"] = o.Repo
	}
	if o.Compression != "" {
		over["WALRUS_COMPRESSION"] = o.Compression
	}
	if len(o.Recipients) > 0 {
		over["WALRUS_AGE_RECIPIENTS"] = strings.Join(o.Recipients, ",")
	}
	if o.IdentityFile != "" {
		abs, err := filepath.Abs(o.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("write config: identity file: %w", err)
		}
		over["WALRUS_AGE_IDENTITY_FILE"] = abs
	}
	lookup := func(k string) (string, bool) {
		if k == "WALRUS_CONFIG" {
			return "", false
		}
		if v, ok := over[k]; ok {
			return v, true
		}
		return o.lookup(k)
	}
	if v, _ := lookup("WALRUS_REPO"); v == "" {
		return nil, usageErrorf("no walrus configuration at %s and no repository given: pass --repo (file:///path, /path or s3://bucket/prefix), or --config FILE of an existing configuration", o.ConfigPath)
	}
	cfg, err := config.Load("", lookup)
	if err != nil {
		return nil, fmt.Errorf("write config %s: %w", o.ConfigPath, err)
	}
	if o.Encrypt && !cfg.Encryption.Enabled() {
		res.IdentityFile = identityPath(o.ConfigPath)
		rcpt, err := crypto.WriteIdentityFile(res.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("write config %s: %w", o.ConfigPath, err)
		}
		res.Recipient = rcpt
		if asRoot() {
			if err := os.Chown(res.IdentityFile, int(pgOwner.uid), int(pgOwner.gid)); err != nil {
				return nil, fmt.Errorf("write config: give %s to %s: %w", res.IdentityFile, pgOwner.name(), err)
			}
		}
		cfg.Encryption.Recipients = []string{rcpt}
		cfg.Encryption.IdentityFile = res.IdentityFile
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("write config %s: %w", o.ConfigPath, err)
		}
	}
	body, err := renderConfig(cfg, o.PGData)
	if err != nil {
		return nil, fmt.Errorf("write config %s: %w", o.ConfigPath, err)
	}
	if err := os.MkdirAll(filepath.Dir(o.ConfigPath), 0o755); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	uid, gid := -1, -1
	if asRoot() {
		uid, gid = int(pgOwner.uid), int(pgOwner.gid)
		res.Owner = pgOwner.name()
	}
	if err := createFile(o.ConfigPath, body, 0o600, uid, gid); err != nil {
		return nil, fmt.Errorf("write config %s: %w", o.ConfigPath, err)
	}
	res.Created = true
	res.Config = cfg
	if !mayAccess(pgOwner, o.ConfigPath, permRead) {
		res.Notes = append(res.Notes, fmt.Sprintf("%s may not be able to read %s (archive_command runs as %s): make its directories traversable by that user", pgOwner.name(), o.ConfigPath, pgOwner.name()))
	}
	for _, f := range []string{cfg.Encryption.IdentityFile, cfg.Encryption.RecipientsFile} {
		if f != "" && !mayAccess(pgOwner, f, permRead) {
			res.Notes = append(res.Notes, fmt.Sprintf("%s may not be able to read %s, which archive_command and restore_command need: chown %s %s", pgOwner.name(), f, pgOwner.name(), f))
		}
	}
	if err := prepareRepoDir(cfg.Repo, pgOwner, res); err != nil {
		return nil, err
	}
	return res, nil
}

// loadExisting loads an existing configuration and notes where the flags
// disagree with it.
func loadExisting(o *Options, pgOwner owner, res *ConfigResult) error {
	cfg, err := config.Load(o.ConfigPath, o.lookup)
	if err != nil {
		return fmt.Errorf("existing configuration: %w", err)
	}
	res.Config = cfg
	differs := func(flag, given, have string) {
		if given != "" && given != have {
			res.Notes = append(res.Notes, fmt.Sprintf("%s exists and is left as it is: %s %s differs from its %q; edit the file to change it", o.ConfigPath, flag, given, have))
		}
	}
	differs("--repo", o.Repo, cfg.Repo)
	differs("--compression", o.Compression, cfg.Compression)
	differs("--identity-file", o.IdentityFile, cfg.Encryption.IdentityFile)
	if (o.Encrypt || len(o.Recipients) > 0) && !cfg.Encryption.Enabled() {
		res.Notes = append(res.Notes, fmt.Sprintf("%s exists and is left as it is: it has no encryption settings, so --encrypt/--recipient were not applied; a repository's encryption is fixed when its first object is stored", o.ConfigPath))
	}
	if cfg.PGData != "" && filepath.Clean(cfg.PGData) != o.PGData {
		res.Notes = append(res.Notes, fmt.Sprintf("%s names pgdata %s, not %s: is it another cluster's configuration? Each cluster needs its own repository", o.ConfigPath, cfg.PGData, o.PGData))
	}
	if !mayAccess(pgOwner, o.ConfigPath, permRead) {
		res.Notes = append(res.Notes, fmt.Sprintf("%s may not be able to read %s, and archive_command runs as %s: chown %s %s; chmod 600 %s", pgOwner.name(), o.ConfigPath, pgOwner.name(), pgOwner.name(), o.ConfigPath, o.ConfigPath))
	}
	return nil
}

// prepareRepoDir creates the directory of a new filesystem repository,
// owned by the server's OS user, who writes it from archive_command (as
// root, walrus would otherwise create it for root, mode 0700).
func prepareRepoDir(repo string, pgOwner owner, res *ConfigResult) error {
	dir := fsRepoDir(repo)
	if dir == "" {
		return nil
	}
	if _, err := os.Stat(dir); err == nil {
		if !mayAccess(pgOwner, dir, permWrite|permExec) {
			res.Notes = append(res.Notes, fmt.Sprintf("%s may not be able to write the repository %s, and archive_command runs as %s", pgOwner.name(), dir, pgOwner.name()))
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create repository directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create repository directory: %w", err)
	}
	if asRoot() {
		if err := os.Chown(dir, int(pgOwner.uid), int(pgOwner.gid)); err != nil {
			return fmt.Errorf("create repository directory: %w", err)
		}
	}
	res.RepoDirCreated = dir
	return nil
}

// fsRepoDir returns the directory of a filesystem repository, "" for
// other kinds.
func fsRepoDir(repo string) string {
	switch {
	case strings.HasPrefix(repo, "file://"):
		u, err := url.Parse(repo)
		if err != nil || !filepath.IsAbs(u.Path) {
			return ""
		}
		return filepath.Clean(u.Path)
	case filepath.IsAbs(repo):
		return filepath.Clean(repo)
	}
	return ""
}

// renderConfig writes cfg as YAML with every setting that differs from
// walrus's default, in the order of config.Config, after a comment.
func renderConfig(cfg *config.Config, pgdata string) ([]byte, error) {
	// The defaults, as Load fills them in; the repository is required,
	// and a value no real configuration has keeps it from matching.
	def, err := config.Load("", func(k string) (string, bool) {
		if k == "WALRUS_REPO" {
			return "/walrus-default-placeholder", true
		}
		return "", false
	})
	if err != nil {
		return nil, err
	}
	var doc, defDoc yaml.Node
	if err := doc.Encode(cfg); err != nil {
		return nil, err
	}
	if err := defDoc.Encode(def); err != nil {
		return nil, err
	}
	pruneDefaults(&doc, &defDoc, map[string]bool{"compression": true})
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	head := fmt.Sprintf(`# walrus configuration of the PostgreSQL cluster in %s,
# written by walrus setup on %s. Settings left out have their
# defaults; walrus config show prints them all. WALRUS_* environment
# variables override this file. It may hold secrets: keep it mode 0600,
# owned by the server's OS user (archive_command reads it).
`, pgdata, time.Now().UTC().Format(time.RFC3339))
	return append([]byte(head), out.Bytes()...), nil
}

// pruneDefaults removes from the mapping n every key whose value equals
// the one in def (nested mappings are pruned key by key, and removed when
// they end up empty), except the keys in keep.
func pruneDefaults(n, def *yaml.Node, keep map[string]bool) {
	if n.Kind == yaml.DocumentNode && def.Kind == yaml.DocumentNode && len(n.Content) == 1 && len(def.Content) == 1 {
		pruneDefaults(n.Content[0], def.Content[0], keep)
		return
	}
	if n.Kind != yaml.MappingNode || def.Kind != yaml.MappingNode {
		return
	}
	defs := map[string]*yaml.Node{}
	for i := 0; i+1 < len(def.Content); i += 2 {
		defs[def.Content[i].Value] = def.Content[i+1]
	}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if d, ok := defs[k.Value]; ok && !keep[k.Value] {
			if v.Kind == yaml.MappingNode {
				pruneDefaults(v, d, nil)
				if len(v.Content) == 0 {
					continue
				}
			} else if nodeEqual(v, d) {
				continue
			}
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
}

func nodeEqual(a, b *yaml.Node) bool {
	if a.Kind != b.Kind || a.Value != b.Value || len(a.Content) != len(b.Content) {
		return false
	}
	for i := range a.Content {
		if !nodeEqual(a.Content[i], b.Content[i]) {
			return false
		}
	}
	return true
}

// createFile writes a new file at path, never replacing one: a temporary
// file next to it, written, chmodded, chowned (uid -1: unchanged),
// fsynced, then linked to path (which fails if path exists) and the
// directory fsynced.
func createFile(path string, data []byte, mode os.FileMode, uid, gid int) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".walrus-tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 {
		if err = f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s appeared meanwhile: %w", path, err)
		}
		return err
	}
	return syncDir(filepath.Dir(path))
}
