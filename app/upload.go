package app

import (
	"net/http"

	"github.com/tus/tusd/v2/pkg/handler"
)

// preCreate checks a new upload's metadata before tus creates it, so bad
// metadata is refused with a 400 before any byte is sent. It then picks
// the upload's id and records who is creating it (from the authenticated
// request, never from client metadata) for the ownership checks and the
// finalizer's actor.
func (a *App) preCreate(ev handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	if err := checkMetadata(ev.Upload.MetaData); err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_BAD_METADATA", err.Error(), http.StatusBadRequest)
	}
	id, err := a.recordUploadOwner(ev.Context)
	if err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, storageFull(err)
	}
	return handler.HTTPResponse{}, handler.FileInfoChanges{ID: id}, nil
}
