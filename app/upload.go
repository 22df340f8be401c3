package app

import (
	"net/http"

	"github.com/tus/tusd/v2/pkg/handler"
)

// preCreate checks a new upload's metadata before tus creates it, so bad
// metadata is refused with a 400 before any byte is sent.
func (a *App) preCreate(ev handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	if err := checkMetadata(ev.Upload.MetaData); err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_BAD_METADATA", err.Error(), http.StatusBadRequest)
	}
	return handler.HTTPResponse{}, handler.FileInfoChanges{}, nil
}
