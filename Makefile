# The two commands a new user needs (see README): `make demo` and `make test`.
.PHONY: demo test

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh
