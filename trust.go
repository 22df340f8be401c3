// The portal runs from a FROM scratch image too, which has no CA
// certificates and no time-zone database: the binary brings both.
//
// x509usefallbackroots=1 makes Go verify with the pool trustRoots hands
// to x509.SetFallbackRoots even where the host has roots of its own, so that
// pool can be the host's roots (or SSL_CERT_FILE / SSL_CERT_DIR) plus the
// Mozilla roots built in: SSL_CERT_FILE adds a private CA without taking the
// public ones away.

//go:debug x509usefallbackroots=1

package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"sync"

	_ "time/tzdata" // CRON_TZ=Europe/Berlin and TZ work where /usr/share/zoneinfo is missing

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

var trustOnce sync.Once

// trustRoots makes the roots TLS clients verify with (webhook endpoints)
// the host's roots, including SSL_CERT_FILE and SSL_CERT_DIR, plus the
// Mozilla roots built into the binary. It runs once per process.
func trustRoots() {
	trustOnce.Do(func() {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		addBuiltinRoots(pool)
		x509.SetFallbackRoots(pool)
	})
}

// addBuiltinRoots adds the Mozilla roots of golang.org/x/crypto/x509roots
// to pool, with their distrust constraints.
func addBuiltinRoots(pool *x509.CertPool) {
	for r := range bundle.Roots() {
		cert, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			panic(fmt.Sprintf("built-in root: %v", err)) // the bundle is tested upstream
		}
		if r.Constraint == nil {
			pool.AddCert(cert)
		} else {
			pool.AddCertWithConstraint(cert, r.Constraint)
		}
	}
}

// checkCertEnv refuses an SSL_CERT_FILE that holds no certificate, so a
// typo is a start-up error rather than failed webhook deliveries.
func checkCertEnv(getenv func(string) string) error {
	file := getenv("SSL_CERT_FILE")
	if file == "" {
		return nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("SSL_CERT_FILE=%q: %w", file, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("SSL_CERT_FILE=%q: want a file of PEM certificates; it holds none", file)
	}
	return nil
}
