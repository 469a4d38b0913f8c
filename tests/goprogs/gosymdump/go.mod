module mcalltrace.test/gosymdump

go 1.19
