module github.com/lorakit/lorakit/go

go 1.26
