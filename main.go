// Command portal is Doorito Portal: a resumable-upload server that records
// every finished file and tells other systems about it through signed
// webhooks.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/doorito/portal/app"
)

const usage = `Doorito Portal: resumable uploads in, signed webhooks out.

Usage: portal <command> [flags]

Commands:
  serve                     run the portal (portal serve --help lists its flags,
                            each with a PORTAL_* environment variable)
  healthcheck [--url URL]   exit 0 when the local portal is ready (Docker's HEALTHCHECK)
  backup [--data-dir D] FILE
                            write a consistent copy of the database to FILE
                            (safe while the portal serves)
  user add [--data-dir D] --username U [--role uploader|admin]
                            create a user; the password comes from
                            PORTAL_USER_PASSWORD or the first line of stdin
  token create [--data-dir D] --username U [--name N] [--expires 720h]
                            issue an API token for a user and print it (shown once)
  version                   print the version (also: portal --version)
  help                      print this help (also: portal --help)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command in args and returns the exit status: 0, 1 when the
// command failed, 2 for a usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "version", "--version", "-version", "-v":
		fmt.Fprintln(stdout, versionLine())
		return 0
	case "healthcheck":
		return healthcheck(args, stderr)
	case "backup":
		return backup(args, stdout, stderr)
	case "user":
		return userCmd(args, os.Stdin, os.Getenv, stdout, stderr)
	case "token":
		return tokenCmd(args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	if strings.HasPrefix(cmd, "-") {
		fmt.Fprintf(stderr, "portal: flag %s before a command: flags follow the command, e.g. portal serve %s (portal help lists the commands)\n", cmd, cmd)
	} else {
		fmt.Fprintf(stderr, "portal: unknown command %q (portal help lists the commands)\n", cmd)
	}
	return 2
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level)) // checked by the flag
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the portal until SIGINT or SIGTERM. Every setting is checked
// before anything is written; the listen address is bound before the data
// directory and the first admin are created.
func serve(args []string, stdout, stderr io.Writer) int {
	cfg, f, err := parseServe(args, os.Getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		printErrors(stderr, err)
		return 2
	}
	logger := newLogger(stderr, f.logLevel, f.logFormat)
	cfg.Logger = logger
	cfg.Version = versionString()
	cfg.Console = stdout
	trustRoots()

	a, err := app.New(cfg)
	if err != nil {
		printErrors(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Open(ctx); err != nil {
		printErrors(stderr, f.name(err))
		return 1
	}
	fmt.Fprintf(stdout, "Doorito Portal %s listening on %s\n", cfg.Version, a.URL())
	if cfg.TrustProxy && cfg.PublicURL == "" {
		logger.Warn("--trust-proxy without --public-url: upload URLs follow the proxy's headers, but events "+
			"(source, file.download_url) are written by background jobs too and carry the internal URL; "+
			"set --public-url (PORTAL_PUBLIC_URL) to the URL clients use", "url", a.URL())
	}
	<-ctx.Done()
	stop() // a second signal kills the process the default way
	logger.Info("shutting down")
	if err := a.Close(); err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	return 0
}

// printErrors writes each error of a (possibly joined) error on its own
// line, once.
func printErrors(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(w, "portal:", line)
	}
}

// name rewrites the app's start-up failure of a setting to name the flag or
// environment variable that set it: --data-dir "/x": cannot write ….
func (f *serveFlags) name(err error) error {
	var se *app.SettingError
	if !errors.As(err, &se) {
		return err
	}
	switch se.Field {
	case "Listen":
		return fmt.Errorf("%s %q: %w", f.source("listen"), se.Value, se.Err)
	case "MetricsListen":
		return fmt.Errorf("%s %q: %w", f.source("metrics-listen"), se.Value, se.Err)
	case "DataDir":
		return fmt.Errorf("%s %q: %w", f.source("data-dir"), se.Value, se.Err)
	case "TempDir":
		return fmt.Errorf("TMPDIR=%q: %w", se.Value, se.Err)
	}
	return err
}

// healthcheck asks the portal at --url (default from PORTAL_LISTEN) whether
// it is ready.
func healthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("portal healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := os.Getenv("PORTAL_LISTEN")
	if listen == "" {
		listen = app.DefaultListen
	}
	host := strings.Replace(listen, "0.0.0.0:", "127.0.0.1:", 1)
	url := fs.String("url", "http://"+host+"/readyz", "readiness `URL` to check")
	if err := fs.Parse(args); err != nil {
		return 2
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
	fs := flag.NewFlagSet("portal backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := os.Getenv("PORTAL_DATA_DIR")
	if dataDir == "" {
		dataDir = app.DefaultDataDir
	}
	fs.StringVar(&dataDir, "data-dir", dataDir, "the portal's data `dir`ectory (env PORTAL_DATA_DIR)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: portal backup [--data-dir D] FILE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	if err := app.Backup(context.Background(), dataDir, fs.Arg(0)); err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	fmt.Fprintln(stdout, "database backed up to", fs.Arg(0))
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

// dataDirFlag adds --data-dir, defaulting to PORTAL_DATA_DIR or ./data.
func dataDirFlag(fs *flag.FlagSet) *string {
	dir := os.Getenv("PORTAL_DATA_DIR")
	if dir == "" {
		dir = app.DefaultDataDir
	}
	return fs.String("data-dir", dir, "the portal's data `dir`ectory (env PORTAL_DATA_DIR)")
}

// userCmd runs `portal user add`: it creates a user in the data dir. The
// password comes from PORTAL_USER_PASSWORD or the first line of stdin.
func userCmd(args []string, stdin io.Reader, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "add" {
		fmt.Fprintln(stderr, "Usage: portal user add [--data-dir D] --username U [--role uploader|admin]")
		return 2
	}
	fs := flag.NewFlagSet("portal user add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := dataDirFlag(fs)
	username := fs.String("username", "", "the new user's `name`")
	role := fs.String("role", app.RoleUploader, "`role`: uploader or admin")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: portal user add [--data-dir D] --username U [--role uploader|admin]")
		fmt.Fprintln(stderr, "The password is read from PORTAL_USER_PASSWORD, or else from the first line of stdin.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *username == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	pw := getenv("PORTAL_USER_PASSWORD")
	if pw == "" {
		fmt.Fprintf(stderr, "Password for %s (one line on stdin): ", *username)
		line, err := bufio.NewReader(stdin).ReadString('\n')
		fmt.Fprintln(stderr)
		if err != nil && (!errors.Is(err, io.EOF) || line == "") {
			fmt.Fprintln(stderr, "portal: no password on stdin")
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
	usage := "Usage: portal token create [--data-dir D] --username U [--name N] [--expires 720h]"
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("portal token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := dataDirFlag(fs)
	username := fs.String("username", "", "the `user` the token acts as")
	name := fs.String("name", "cli", "a `name` to recognise the token by")
	expires := fs.Duration("expires", 0, "lifetime (e.g. 720h); 0 for a token that does not expire")
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *username == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	t, secret, err := app.CreateToken(context.Background(), *dataDir, *username, *name, *expires)
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
