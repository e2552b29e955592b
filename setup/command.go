package setup

import (
	"regexp"
	"strings"
	"sync"
)

// ArchiveCommand returns the archive_command that runs the walrus binary
// (an absolute path) with the configuration file config:
// "<binary> --config <config> wal-push %p". Without a config file the
// --config option is left out (walrus then reads WALRUS_* variables of the
// server's environment). Paths are quoted for the shell PostgreSQL runs
// the command with, and their '%' signs doubled, so any path works.
func ArchiveCommand(binary, config string) string {
	return commandLine(binary, config, "wal-push", "%p")
}

// RestoreCommand returns the matching restore_command:
// "<binary> --config <config> wal-fetch %f %p".
func RestoreCommand(binary, config string) string {
	return commandLine(binary, config, "wal-fetch", "%f", "%p")
}

func commandLine(binary, config string, args ...string) string {
	words := []string{escapePercent(shellQuote(binary))}
	if config != "" {
		words = append(words, "--config", escapePercent(shellQuote(config)))
	}
	return strings.Join(append(words, args...), " ")
}

// shellSafe matches words the shell takes literally.
var shellSafe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_./:=+,@-]+$`) }) // compiled on first use, not at every process start

// shellQuote quotes s for sh: as is when every character is safe, else in
// single quotes (a quote inside written as '\”).
func shellQuote(s string) string {
	if shellSafe().MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// escapePercent doubles '%', which archive_command and restore_command
// otherwise read as the start of a placeholder (%p, %f, %r, %%).
func escapePercent(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// CommandInfo is what walrus can tell about an archive_command.
type CommandInfo struct {
	// WALPush is true when the command runs "wal-push".
	WALPush bool
	// Binary is the program the command runs (after any NAME=value
	// assignments and env/exec), "" when it cannot tell.
	Binary string
	// Config is the value of its --config option, "" when absent.
	Config string
}

// ParseCommand reads an archive_command or restore_command: it splits it
// into words as sh would (single quotes, double quotes, backslashes; no
// expansions) after undoing the doubling of '%', and finds the program,
// its --config option and whether it runs wal-push.
func ParseCommand(cmd string) CommandInfo {
	var ci CommandInfo
	words := shellWords(cmd)
	for i := 0; i < len(words); i++ {
		w := strings.ReplaceAll(words[i], "%%", "%")
		switch {
		case w == "wal-push":
			ci.WALPush = true
		case w == "--config" && i+1 < len(words):
			ci.Config = strings.ReplaceAll(words[i+1], "%%", "%")
			i++
		case strings.HasPrefix(w, "--config="):
			ci.Config = strings.TrimPrefix(w, "--config=")
		case ci.Binary == "" && !ci.WALPush && w != "env" && w != "exec" && !isAssignment(w) && !strings.HasPrefix(w, "-"):
			ci.Binary = w
		}
	}
	if !ci.WALPush && strings.Contains(cmd, "wal-push") {
		// Inside a quoted "sh -c '...'" or a script argument: it runs
		// wal-push, but its words are out of reach.
		ci.WALPush = true
		ci.Binary, ci.Config = "", ""
	}
	return ci
}

var assignment = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`) }) // compiled on first use, not at every process start

func isAssignment(w string) bool { return assignment().MatchString(w) }

// shellWords splits s into words as sh does, without expansions.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			in = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				cur.WriteString(s[i+1:])
				i = len(s)
				break
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			in = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			in = true
			i++
			cur.WriteByte(s[i])
		default:
			in = true
			cur.WriteByte(c)
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}
