package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/doorito/portal/app"
)

// A command is one of the helper commands (healthcheck, backup, user add,
// token create): its flags, its synopsis, and how many arguments it takes.
type command struct {
	fs       *flag.FlagSet
	synopsis string // "portal backup [--data-dir D] FILE"
	more     string // what --help adds after the flags
	args     int    // positional arguments
}

func newCommand(name, synopsis, more string, args int) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by parse
	fs.Usage = func() {}
	return &command{fs: fs, synopsis: synopsis, more: more, args: args}
}

// parse parses args. --help prints the usage to stdout (exit 0); a bad
// flag or a wrong number of arguments is one line on stderr (exit 2).
// ok is false when the command must exit with code.
func (c *command) parse(args []string, stdout, stderr io.Writer) (code int, ok bool) {
	err := c.fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: %s\n", c.synopsis)
		if c.more != "" {
			fmt.Fprintln(stdout, c.more)
		}
		c.fs.SetOutput(stdout)
		c.fs.PrintDefaults()
		return 0, false
	}
	if err == nil && c.fs.NArg() != c.args {
		err = fmt.Errorf("want %d argument(s), got %d", c.args, c.fs.NArg())
	}
	if err != nil {
		msg := err.Error()
		if name, found := strings.CutPrefix(msg, "flag provided but not defined: -"); found {
			msg = "unknown flag --" + name
		} else if name, found := strings.CutPrefix(msg, "flag needs an argument: -"); found {
			msg = "--" + name + " needs a value"
		}
		fmt.Fprintf(stderr, "%s: %s; usage: %s\n", c.fs.Name(), msg, c.synopsis)
		return 2, false
	}
	return 0, true
}

// parseForUser parses the args of a command that acts on a user in the
// data directory: --username is required (usage error, 2) and the
// directory must exist (1).
func (c *command) parseForUser(args []string, username, dataDir *string, stdout, stderr io.Writer) (code int, ok bool) {
	if code, ok := c.parse(args, stdout, stderr); !ok {
		return code, false
	}
	if *username == "" {
		fmt.Fprintf(stderr, "%s: --username is required; usage: %s\n", c.fs.Name(), c.synopsis)
		return 2, false
	}
	if !checkDataDir(*dataDir, stderr) {
		return 1, false
	}
	return 0, true
}

// dataDirFlag adds --data-dir, defaulting to PORTAL_DATA_DIR or ./data.
func (c *command) dataDirFlag() *string {
	dir := os.Getenv("PORTAL_DATA_DIR")
	if dir == "" {
		dir = app.DefaultDataDir
	}
	return c.fs.String("data-dir", dir, "the portal's data `dir`ectory (env PORTAL_DATA_DIR)")
}

// checkDataDir refuses a data directory that does not exist, with a line
// that says what to do, instead of SQLite's "unable to open database file".
func checkDataDir(dir string, stderr io.Writer) bool {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		fmt.Fprintf(stderr, "portal: --data-dir %q: not a directory; name the data directory of the portal (PORTAL_DATA_DIR), or run portal serve once to create it\n", dir)
		return false
	}
	return true
}

// healthcheck asks the portal at --url (default from PORTAL_LISTEN) whether
// it is ready.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	c := newCommand("portal healthcheck", "portal healthcheck [--url URL]",
		"Exits 0 when the portal answers /readyz with 200 (Docker's HEALTHCHECK runs it).", 0)
	listen := os.Getenv("PORTAL_LISTEN")
	if listen == "" {
		listen = app.DefaultListen
	}
	host := strings.Replace(listen, "0.0.0.0:", "127.0.0.1:", 1)
	url := c.fs.String("url", "http://"+host+"/readyz", "readiness `URL` to check (default from PORTAL_LISTEN)")
	if code, ok := c.parse(args, stdout, stderr); !ok {
		return code
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(*url)
	if err != nil {
		fmt.Fprintln(stderr, "portal healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "portal healthcheck: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	return 0
}

// backup writes an online copy of the database (see docs/operations.md).
func backup(args []string, stdout, stderr io.Writer) int {
	c := newCommand("portal backup", "portal backup [--data-dir D] FILE",
		"Writes a consistent, compact copy of the database to FILE (which must not exist), safe while the portal serves.", 1)
	dataDir := c.dataDirFlag()
	if code, ok := c.parse(args, stdout, stderr); !ok {
		return code
	}
	if !checkDataDir(*dataDir, stderr) {
		return 1
	}
	if err := app.Backup(context.Background(), *dataDir, c.fs.Arg(0)); err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	fmt.Fprintln(stdout, "database backed up to", c.fs.Arg(0))
	return 0
}

// secretEnv reads a secret from the environment variable name, or from the
// file named by name_FILE (trailing newline removed). Secrets never come
// from flags, which other users can see in ps.
func secretEnv(getenv func(string) string, name string) (string, error) {
	if v := getenv(name); v != "" {
		return v, nil
	}
	file := getenv(name + "_FILE")
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// userCmd runs `portal user add`: it creates a user in the data dir. The
// password comes from PORTAL_USER_PASSWORD or the first line of stdin.
func userCmd(args []string, stdin io.Reader, getenv func(string) string, stdout, stderr io.Writer) int {
	synopsis := "portal user add [--data-dir D] --username U [--role uploader|admin]"
	if len(args) == 0 || args[0] != "add" {
		fmt.Fprintf(stderr, "portal user: want the subcommand add; usage: %s\n", synopsis)
		return 2
	}
	c := newCommand("portal user add", synopsis,
		"The password is read from PORTAL_USER_PASSWORD, or else from the first line of stdin.", 0)
	dataDir := c.dataDirFlag()
	username := c.fs.String("username", "", "the new user's `name`")
	role := c.fs.String("role", app.RoleUploader, "`role`: uploader or admin")
	if code, ok := c.parseForUser(args[1:], username, dataDir, stdout, stderr); !ok {
		return code
	}
	pw := getenv("PORTAL_USER_PASSWORD")
	if pw == "" {
		fmt.Fprintf(stderr, "Password for %s (one line on stdin): ", *username)
		line, err := bufio.NewReader(stdin).ReadString('\n')
		fmt.Fprintln(stderr)
		if err != nil && (!errors.Is(err, io.EOF) || line == "") {
			fmt.Fprintln(stderr, "portal: no password on stdin (or set PORTAL_USER_PASSWORD)")
			return 2
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	u, err := app.AddUser(context.Background(), *dataDir, *username, *role, pw)
	if err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	fmt.Fprintf(stdout, "created user %s (role %s, id %s)\n", u.Username, u.Role, u.ID)
	return 0
}

// tokenCmd runs `portal token create`: it issues an API token for a user
// in the data dir and prints it, the only time it is shown.
func tokenCmd(args []string, stdout, stderr io.Writer) int {
	synopsis := "portal token create [--data-dir D] --username U [--name N] [--expires 720h] [--scopes files:read,events:read]"
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintf(stderr, "portal token: want the subcommand create; usage: %s\n", synopsis)
		return 2
	}
	c := newCommand("portal token create", synopsis, "Prints the token on stdout; it is shown only this once.", 0)
	dataDir := c.dataDirFlag()
	username := c.fs.String("username", "", "the `user` the token acts as")
	name := c.fs.String("name", "cli", "a `name` to recognise the token by")
	expires := c.fs.Duration("expires", 0, "lifetime (e.g. 720h); 0 for a token that does not expire")
	scopes := c.fs.String("scopes", "", "comma-separated `scopes` the token is narrowed to (docs/auth.md); none: all the user's rights")
	if code, ok := c.parseForUser(args[1:], username, dataDir, stdout, stderr); !ok {
		return code
	}
	var scopeList []string
	for _, s := range strings.Split(*scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopeList = append(scopeList, s)
		}
	}
	t, secret, err := app.CreateToken(context.Background(), *dataDir, *username, *name, *expires, scopeList)
	if err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	exp := "never"
	if t.ExpiresAt != nil {
		exp = t.ExpiresAt.Format(time.RFC3339)
	}
	fmt.Fprintf(stderr, "token %s (%q) for %s, expires %s; it is shown only this once:\n", t.ID, t.Name, t.Username, exp)
	fmt.Fprintln(stdout, secret)
	return 0
}
