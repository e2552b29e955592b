package basebackup

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/pg"
)

// Recovery target actions (recovery_target_action).
const (
	ActionPromote  = "promote"
	ActionPause    = "pause"
	ActionShutdown = "shutdown"
)

// Recovery is what backup-fetch prepares for the restored cluster's first
// start: recovery.signal and these settings in postgresql.auto.conf.
type Recovery struct {
	// RestoreCommand is restore_command; required.
	RestoreCommand string
	// ConfigFile, when not nil, is written to pg.RestoreConfigFile in the
	// restored data directory, mode 0600, for RestoreCommand to read. Base
	// backups never copy that file.
	ConfigFile []byte
	// Target says where recovery stops; the zero value replays all
	// archived WAL.
	Target RecoveryTarget
	// Action is recovery_target_action: ActionPromote (default),
	// ActionPause or ActionShutdown.
	Action string
}

// RecoveryTarget says where recovery stops. At most one of Immediate,
// Time, LSN and Name is set; none means the end of the archived WAL.
type RecoveryTarget struct {
	// Immediate stops as soon as the backup is consistent
	// (recovery_target = 'immediate').
	Immediate bool
	// Time is recovery_target_time.
	Time time.Time
	// LSN is recovery_target_lsn.
	LSN pg.LSN
	// Name is recovery_target_name, a restore point.
	Name string
	// Exclusive stops just before the target instead of just after it
	// (recovery_target_inclusive = off).
	Exclusive bool
	// Timeline is recovery_target_timeline; "" leaves PostgreSQL's default
	// ("latest").
	Timeline string
}

// IsZero reports whether no target is set.
func (t RecoveryTarget) IsZero() bool {
	return !t.Immediate && t.Time.IsZero() && t.LSN == 0 && t.Name == ""
}

// Validate checks that at most one target is set, and, given the backup
// that will be restored, that the target is not before the point where the
// backup becomes consistent: such a target needs an older backup
// (TRAPS.md 26), and PostgreSQL would refuse it anyway after a long restore.
func (t RecoveryTarget) Validate(b *catalog.Backup) error {
	n := 0
	for _, set := range []bool{t.Immediate, !t.Time.IsZero(), t.LSN != 0, t.Name != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("recovery target: give at most one of immediate, time, LSN and restore point")
	}
	if strings.ContainsAny(t.Name, "\x00\n\r") || strings.ContainsAny(t.Timeline, "\x00\n\r'") {
		return errors.New("recovery target: the name or timeline holds a control character or quote")
	}
	if b == nil {
		return nil
	}
	if t.LSN != 0 && t.LSN < b.FinishLSN {
		return fmt.Errorf("recovery target LSN %s is before %s, where backup %s becomes consistent: restore an older backup", t.LSN, b.FinishLSN, b.Name)
	}
	if !t.Time.IsZero() && t.Time.Before(b.FinishTime) {
		return fmt.Errorf("recovery target time %s is before backup %s finished (%s): restore an older backup", t.Time.UTC().Format(time.RFC3339), b.Name, b.FinishTime.Format(time.RFC3339))
	}
	return nil
}

// settings returns the recovery settings as postgresql.conf lines.
func (r Recovery) settings() ([]string, error) {
	action := r.Action
	if action == "" {
		action = ActionPromote
	}
	switch action {
	case ActionPromote, ActionPause, ActionShutdown:
	default:
		return nil, fmt.Errorf("recovery target action %q: use promote, pause or shutdown", action)
	}
	if r.RestoreCommand == "" {
		return nil, errors.New("no restore_command")
	}
	lines := []string{
		"# Added by walrus backup-fetch for the recovery of this restored backup.",
		"restore_command = " + pg.QuoteConf(r.RestoreCommand),
		"recovery_target_action = " + pg.QuoteConf(action),
	}
	t := r.Target
	switch {
	case t.Immediate:
		lines = append(lines, "recovery_target = 'immediate'")
	case !t.Time.IsZero():
		lines = append(lines, "recovery_target_time = "+pg.QuoteConf(t.Time.UTC().Format("2006-01-02 15:04:05.999999-07:00")))
	case t.LSN != 0:
		lines = append(lines, "recovery_target_lsn = "+pg.QuoteConf(t.LSN.String()))
	case t.Name != "":
		lines = append(lines, "recovery_target_name = "+pg.QuoteConf(t.Name))
	}
	if t.Exclusive && (!t.Time.IsZero() || t.LSN != 0) {
		lines = append(lines, "recovery_target_inclusive = off")
	}
	if t.Timeline != "" {
		lines = append(lines, "recovery_target_timeline = "+pg.QuoteConf(t.Timeline))
	}
	return lines, nil
}

// shellQuote quotes a word for /bin/sh, which runs restore_command.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// RestoreCommandPlan is what RestoreCommandFor decided.
type RestoreCommandPlan struct {
	// Command is the restore_command.
	Command string
	// ConfigFile is the content of pg.RestoreConfigFile to write into the
	// restored data directory, or nil when Command reads the operator's
	// own configuration file.
	ConfigFile []byte
	// Notes say what an operator should know (e.g. that the generated file
	// holds credentials).
	Notes []string
}

// RestoreCommandFor builds the restore_command of a restored cluster: this
// walrus binary (exe, absolute) running wal-fetch with the configuration
// backup-fetch ran with.
//
// When that configuration is exactly a file (configPath, and no WALRUS_*
// or AWS_* variable in environ, the "KEY=value" environment), restore_command names the file:
// the operator keeps managing it. Otherwise the effective configuration is
// frozen into walrus-restore.yaml inside the restored data directory
// (dest): the settings wal-fetch needs, plus AWS_* credentials, region and
// endpoint from the environment when the configuration has none, since the
// server will not run with backup-fetch's environment. That file is mode
// 0600 like the rest of the data directory, walrus base backups never copy
// it (pg.BackupRule), and it should be removed once recovery is done.
func RestoreCommandFor(cfg *config.Config, configPath, exe, dest string, environ []string) (RestoreCommandPlan, error) {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if !filepath.IsAbs(exe) {
		return RestoreCommandPlan{}, fmt.Errorf("restore_command: walrus binary path %q is not absolute", exe)
	}
	if configPath == "" {
		configPath, _ = lookup("WALRUS_CONFIG")
	}
	overridden := false
	for k, v := range env {
		if v != "" && k != "WALRUS_CONFIG" && (strings.HasPrefix(k, "WALRUS_") || strings.HasPrefix(k, "AWS_")) {
			overridden = true
			break
		}
	}
	if configPath != "" && !overridden {
		abs, err := filepath.Abs(configPath)
		if err != nil {
			return RestoreCommandPlan{}, fmt.Errorf("restore_command: config path %s: %w", configPath, err)
		}
		return RestoreCommandPlan{Command: fmt.Sprintf("%s --config %s wal-fetch %%f %%p", shellQuote(exe), shellQuote(abs))}, nil
	}
	frozen := *cfg
	frozen.Source = ""
	frozen.PGData = ""
	frozen.Postgres = config.Postgres{}
	plan := RestoreCommandPlan{}
	if strings.HasPrefix(frozen.Repo, "s3://") {
		get := func(k string) string { v, _ := lookup(k); return v }
		if frozen.S3.AccessKeyID == "" && get("AWS_ACCESS_KEY_ID") != "" && get("AWS_SECRET_ACCESS_KEY") != "" {
			frozen.S3.AccessKeyID, frozen.S3.SecretAccessKey = get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")
			if get("AWS_SESSION_TOKEN") != "" {
				plan.Notes = append(plan.Notes, "AWS_SESSION_TOKEN cannot be written into "+pg.RestoreConfigFile+": give the server's environment credentials that last through recovery")
			}
		}
		if frozen.S3.Region == "" {
			frozen.S3.Region = cmpOrString(get("AWS_REGION"), get("AWS_DEFAULT_REGION"))
		}
		if frozen.S3.Endpoint == "" {
			frozen.S3.Endpoint = cmpOrString(get("AWS_ENDPOINT_URL_S3"), get("AWS_ENDPOINT_URL"))
		}
	}
	b, err := yaml.Marshal(&frozen)
	if err != nil {
		return RestoreCommandPlan{}, fmt.Errorf("restore_command: write configuration: %w", err)
	}
	header := "# Written by walrus backup-fetch: the configuration restore_command uses\n" +
		"# to fetch WAL during recovery. It may hold repository credentials: walrus\n" +
		"# base backups never copy it; remove it once recovery has finished.\n"
	plan.ConfigFile = append([]byte(header), b...)
	path := filepath.Join(dest, pg.RestoreConfigFile)
	plan.Command = fmt.Sprintf("%s --config %s wal-fetch %%f %%p", shellQuote(exe), shellQuote(path))
	if frozen.S3.SecretAccessKey != "" {
		plan.Notes = append(plan.Notes, path+" holds the repository's S3 credentials for restore_command: remove it once recovery has finished")
	}
	return plan, nil
}

func cmpOrString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
