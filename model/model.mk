# model/: the state-word protocol (breaker.pml), the count window (ring.pml), a group's
# slot lifecycle (group.pml) and the registry's one-breaker-per-name (registry.pml) checked
# exhaustively by spin, planted protocol bugs included. See docs/verification.md.
#   model        every configuration (about 1.5 GB, 2 minutes)
#   test-model   (make test) the same without the largest configuration (about 80 s, two
#                runs at a time: MODEL_JOBS)

TEST_STEPS += test-model
TEST_DEPS  += spin

.PHONY: deps-model model test-model

deps-model:
	@$(NEED) spin

model: deps-model
	@CC=$(CC) model/check.sh $(BUILD)/model full

test-model: deps-model
	@CC=$(CC) model/check.sh $(BUILD)/model
