# tools/cbctl.mk: cbctl, the operator's tool for shared breaker files (docs/cbctl.md).
# Its tests are tests/shm/ (make test-cbctl). Included by the Makefile.

CBCTL_BIN := $(BUILD)/tools/cbctl
ALL       += $(CBCTL_BIN)

.PHONY: deps-cbctl

deps-cbctl:
	@$(NEED) libmicrohttpd-dev libcjson-dev

$(CBCTL_BIN): tools/cbctl.c cb.h tools/cbflags.h | deps-cbctl
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< -lmicrohttpd -lcjson $(LDLIBS)
