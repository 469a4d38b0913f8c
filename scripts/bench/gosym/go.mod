module mcalltrace.bench/gosym

go 1.21
