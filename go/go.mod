module lorakit

go 1.26
