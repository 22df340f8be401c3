// Command portal is Doorito Portal: a resumable-upload server that records
// every finished file and tells other systems about it through signed
// webhooks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

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
  token create [--data-dir D] --username U [--name N] [--expires 720h] [--scopes S]
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
		return healthcheck(args, stdout, stderr)
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
	case "S3":
		return se.Err // the store's one line names what is wrong
	}
	return err
}
