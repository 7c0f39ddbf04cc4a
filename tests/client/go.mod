module streamingtoken.io/tests/client

go 1.26
