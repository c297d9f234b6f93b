package main

import (
	"log"

	"github.com/ztbank/ztbank/libs/server"
)

// newErrorLog routes net/http's error lines (TLS handshake failures, mostly) to the
// structured log.
func newErrorLog(rt *server.Runtime) *log.Logger {
	return log.New(logWriter{rt.Log}, "", 0)
}
