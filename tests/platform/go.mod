module streamingtoken.io/tests/platform

go 1.26
