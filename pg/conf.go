package pg

import "strings"

// ParseConfLine parses "name [=] value [# comment]" as PostgreSQL's
// configuration lexer does: names are case-insensitive and may hold dots;
// a value is a single-quoted string (with ” and backslash escapes) or an
// unquoted word. ok is false for blank lines, comments and lines that do
// not parse.
func ParseConfLine(s string) (name, value string, ok bool) {
	i := skipSpace(s, 0)
	j := i
	for j < len(s) && (isNameChar(s[j]) || (j > i && (s[j] >= '0' && s[j] <= '9' || s[j] == '.'))) {
		j++
	}
	if j == i {
		return "", "", false
	}
	name = strings.ToLower(s[i:j])
	k := skipSpace(s, j)
	if k < len(s) && s[k] == '=' {
		k = skipSpace(s, k+1)
	}
	if k >= len(s) || s[k] == '#' {
		return "", "", false
	}
	if s[k] == '\'' {
		v, end, ok := unquoteConf(s, k)
		if !ok {
			return "", "", false
		}
		if rest := skipSpace(s, end); rest < len(s) && s[rest] != '#' {
			return "", "", false
		}
		return name, v, true
	}
	e := k
	for e < len(s) && s[e] != ' ' && s[e] != '\t' && s[e] != '#' && s[e] != '\'' {
		e++
	}
	if rest := skipSpace(s, e); rest < len(s) && s[rest] != '#' {
		return "", "", false
	}
	return name, s[k:e], true
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	return i
}

// unquoteConf reads the single-quoted string that starts at s[start], as
// PostgreSQL's GUC_scanstr does: ” is a quote, a backslash escapes the
// next character (\b \f \n \r \t, up to three octal digits, anything
// else stands for itself). It returns the value and the index after the
// closing quote.
func unquoteConf(s string, start int) (string, int, bool) {
	var b strings.Builder
	for i := start + 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == '\'':
			return b.String(), i + 1, true
		case c == '\\' && i+1 < len(s):
			i++
			switch n := s[i]; n {
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '0', '1', '2', '3', '4', '5', '6', '7':
				v := int(n - '0')
				for k := 0; k < 2 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '7'; k++ {
					i++
					v = v*8 + int(s[i]-'0')
				}
				b.WriteByte(byte(v))
			default:
				b.WriteByte(n)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}

// QuoteConf quotes a value for postgresql.conf the way ALTER SYSTEM
// writes it: in single quotes, with quotes and backslashes doubled.
func QuoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}
