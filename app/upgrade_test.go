package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// fixtureToken is the admin token stored in testdata/upgrade/8f89411.
const fixtureToken = "dpt_-X1JpsjXrQxl8APZ7rcW2V_YlfSdILlIbXEHLkdP_L4"

// A database made by the release before the outbox owned its schema opens
// with this portal: a copy is kept first, the schemas are brought up to
// date, and every file, event, delivery, user, token and upload in
// progress is there and works.
func TestUpgradeFromRelease8f89411(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, filepath.Join("..", "testdata", "upgrade", "8f89411"), dir)
	a := MustOpen(t, Config{DataDir: dir, AllowPrivateEndpoints: true})

	backups, _ := filepath.Glob(filepath.Join(dir, "backups", "*-pre-upgrade.db"))
	if len(backups) != 1 {
		t.Fatalf("backups before the upgrade: %v, want one", backups)
	}
	if v := schemaVersion(t, backups[0], "schema_migrations"); v != 3 {
		t.Errorf("the kept copy is at app version %d, want 3 (the release's)", v)
	}

	// The release's token still authenticates; its data is all there.
	var files FilePage
	st, body := doAs(t, fixtureToken, http.MethodGet, a.URL()+"/api/v1/files", nil, nil)
	if st != http.StatusOK || decodeInto(t, body, &files) != nil || len(files.Items) != 1 ||
		files.Items[0].Filename != "hello.txt" || files.Items[0].SHA256 != sha256Hex([]byte("hello world")) {
		t.Fatalf("files after the upgrade: %d %s", st, body)
	}
	resp := authGet(t, a.URL()+"/api/v1/files/"+files.Items[0].ID+"/content")
	got := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || got != "hello world" {
		t.Errorf("content: %d %q", resp.StatusCode, got)
	}
	if evs := eventsOf(t, a, files.Items[0].ID); len(evs) != 1 || evs[0].Type != EventFileUploaded {
		t.Errorf("events of the file: %+v", evs)
	}
	var ds struct{ Items []struct{ Status string } }
	if getJSON(t, a.URL()+"/api/v1/deliveries", &ds); len(ds.Items) != 1 || ds.Items[0].Status != "pending" {
		t.Errorf("deliveries: %+v", ds.Items)
	}
	var users struct{ Items []User }
	getJSON(t, a.URL()+"/api/v1/users", &users)
	var names []string
	for _, u := range users.Items {
		names = append(names, u.Username)
	}
	if sort.Strings(names); strings.Join(names, ",") != "admin,uma" {
		t.Errorf("users: %v", names)
	}

	// The upload in progress resumes and becomes a file with its event.
	url := a.URL() + "/files/40ac2ffb341ab35a65c1e5a9a8760b22"
	data := randomBytes(t, 100)
	if st, off := tusPatch(t, url, 0, data); st != http.StatusNoContent || off != 100 {
		t.Fatalf("resume the release's upload: %d, offset %d", st, off)
	}
	f, ok := fileByUpload(t, a, url)
	if !ok || f.SHA256 != sha256Hex(data) || len(eventsOf(t, a, f.ID)) != 1 {
		t.Errorf("the resumed upload's file: %+v %v", f, ok)
	}

	// Reopening migrates nothing and keeps no second copy.
	a.Close()
	MustOpen(t, Config{DataDir: dir})
	if again, _ := filepath.Glob(filepath.Join(dir, "backups", "*.db")); len(again) != 1 {
		t.Errorf("backups after a reopen: %v", again)
	}
}

// The upgraded database and a new one have the same tables and indexes.
func TestUpgradedSchemaEqualsNew(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, filepath.Join("..", "testdata", "upgrade", "8f89411"), dir)
	upgraded, err := OpenDB(context.Background(), dbPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer upgraded.Close()
	fresh, err := OpenDB(context.Background(), filepath.Join(t.TempDir(), "portal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if a, b := schemaText(t, upgraded.R), schemaText(t, fresh.R); a != b {
		t.Errorf("schemas differ:\nupgraded:\n%s\nnew:\n%s", a, b)
	}
}

// schemaText is the database's tables and indexes, one per line, with
// "IF NOT EXISTS" and runs of white space taken out.
func schemaText(tb testing.TB, db *sql.DB) string {
	tb.Helper()
	rows, err := db.Query(`SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	space := regexp.MustCompile(`\s+`)
	comment := regexp.MustCompile(`--[^\n]*`)
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.Fatal(err)
		}
		s = comment.ReplaceAllString(s, "")
		s = strings.ReplaceAll(s, "IF NOT EXISTS ", "")
		out = append(out, strings.TrimSpace(space.ReplaceAllString(s, " ")))
	}
	return strings.Join(out, "\n")
}

func schemaVersion(tb testing.TB, path, table string) int {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("SELECT MAX(version) FROM " + table).Scan(&v); err != nil {
		tb.Fatal(err)
	}
	return v
}

func readAll(tb testing.TB, resp *http.Response) string {
	tb.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func decodeInto(tb testing.TB, body []byte, v any) error {
	tb.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		tb.Errorf("not JSON: %v: %s", err, body)
		return err
	}
	return nil
}
