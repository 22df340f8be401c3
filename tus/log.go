package tus

import (
	"context"
	"log/slog"

	expslog "golang.org/x/exp/slog"
)

// newExpLogger adapts a log/slog logger to the golang.org/x/exp/slog logger
// tusd's handler takes. tusd logs every chunk and request at info level;
// those lines are demoted to debug so an info log has one line per request
// (written by the portal's own middleware), not one per PATCH chunk.
func newExpLogger(l *slog.Logger) *expslog.Logger {
	return expslog.New(expHandler{h: l.Handler()})
}

var chatty = map[string]bool{
	"ChunkWriteStart": true, "ChunkWriteComplete": true, "RequestIncoming": true,
	"ResponseOutgoing": true, "UploadCreated": true, "UploadFinished": true,
}

type expHandler struct {
	h slog.Handler
}

func (e expHandler) level(msg string, l expslog.Level) slog.Level {
	if l == expslog.LevelInfo && chatty[msg] {
		return slog.LevelDebug
	}
	return slog.Level(l)
}

func (e expHandler) Enabled(ctx context.Context, l expslog.Level) bool {
	return e.h.Enabled(ctx, slog.Level(l)-4) // decided per record in Handle
}

func (e expHandler) Handle(ctx context.Context, r expslog.Record) error {
	lvl := e.level(r.Message, r.Level)
	if !e.h.Enabled(ctx, lvl) {
		return nil
	}
	out := slog.NewRecord(r.Time, lvl, r.Message, r.PC)
	r.Attrs(func(a expslog.Attr) bool {
		out.AddAttrs(convertAttr(a))
		return true
	})
	return e.h.Handle(ctx, out)
}

func (e expHandler) WithAttrs(attrs []expslog.Attr) expslog.Handler {
	conv := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		conv[i] = convertAttr(a)
	}
	return expHandler{h: e.h.WithAttrs(conv)}
}

func (e expHandler) WithGroup(name string) expslog.Handler {
	return expHandler{h: e.h.WithGroup(name)}
}

func convertAttr(a expslog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == expslog.KindGroup {
		group := v.Group()
		conv := make([]any, len(group))
		for i, g := range group {
			conv[i] = convertAttr(g)
		}
		return slog.Group(a.Key, conv...)
	}
	return slog.Any(a.Key, v.Any())
}
