package main

import (
	"context"
	"os"
	"strconv"
	"testing"
)

func TestZZFill(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ZZ_N"))
	dir := os.Getenv("ZZ_DIR")
	if n == 0 || dir == "" {
		t.Skip()
	}
	os.MkdirAll(dir, 0o750)
	st, err := fillRegistry(context.Background(), dir, n, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
}
