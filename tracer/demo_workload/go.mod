module mcalltrace.dev/demo

go 1.19
