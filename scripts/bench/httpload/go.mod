module mcalltrace.bench/httpload

go 1.21
