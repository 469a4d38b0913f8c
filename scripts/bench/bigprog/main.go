// bigprog links as much of the standard library as it can, so that the inspect benchmark has a
// large binary (30 MB and more, stripped) to read. Calling methods by a name known only at run
// time makes the linker keep every exported method of every reachable type.
package main

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"compress/bzip2"
	"compress/flate"
	"compress/gzip"
	"compress/lzw"
	"compress/zlib"
	"container/heap"
	"container/list"
	"container/ring"
	"crypto/aes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"debug/dwarf"
	"debug/elf"
	"debug/gosym"
	"debug/macho"
	"debug/pe"
	"debug/plan9obj"
	"encoding/ascii85"
	"encoding/asn1"
	"encoding/base32"
	"encoding/base64"
	"encoding/csv"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"expvar"
	"flag"
	"fmt"
	"go/ast"
	"go/build"
	"go/constant"
	"go/doc"
	"go/format"
	"go/importer"
	"go/parser"
	"go/printer"
	"go/scanner"
	"go/token"
	"go/types"
	"hash/adler32"
	"hash/crc32"
	"hash/crc64"
	"hash/fnv"
	"html"
	htmltemplate "html/template"
	"image"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"index/suffixarray"
	"io"
	"log"
	"log/slog"
	"math/big"
	"math/cmplx"
	"math/rand"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/cookiejar"
	"net/http/fcgi"
	"net/http/httptest"
	"net/http/httputil"
	"net/http/pprof"
	"net/mail"
	"net/rpc"
	"net/rpc/jsonrpc"
	"net/smtp"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	textscanner "text/scanner"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode/utf16"
)

var everything = []any{
	tar.NewReader, zip.NewReader, bufio.NewReader, bzip2.NewReader, flate.NewReader, gzip.NewReader,
	lzw.NewReader, zlib.NewReader, heap.Init, list.New, ring.New, aes.NewCipher, ecdsa.Sign,
	ed25519.Sign, elliptic.P256, hmac.New, md5.New, rsa.GenerateKey, sha1.New, sha256.New, sha512.New,
	tls.Dial, x509.ParseCertificate, sql.Open, dwarf.New, elf.Open, gosym.NewTable, macho.Open, pe.Open,
	plan9obj.Open, ascii85.NewEncoder, asn1.Marshal, base32.NewEncoding, base64.NewEncoding, csv.NewReader,
	gob.NewEncoder, hex.EncodeToString, json.Marshal, pem.Decode, xml.Marshal, expvar.NewInt,
	ast.Print, build.Import, constant.MakeInt64, doc.New, format.Source, importer.Default, parser.ParseFile,
	printer.Fprint, scanner.PrintError, token.NewFileSet, types.NewPackage, adler32.New, crc32.NewIEEE,
	crc64.New, fnv.New64, html.EscapeString, htmltemplate.New, image.NewRGBA, palette.Plan9, draw.Draw,
	gif.Decode, jpeg.Decode, png.Decode, suffixarray.New, io.Copy, log.New, slog.New, big.NewInt,
	cmplx.Abs, rand.New, mime.TypeByExtension, multipart.NewReader, quotedprintable.NewReader,
	net.Dial, http.ListenAndServe, cgi.Serve, cookiejar.New, fcgi.Serve, httptest.NewServer,
	httputil.DumpRequest, pprof.Index, mail.ParseAddress, rpc.NewServer, jsonrpc.NewClient, smtp.Dial,
	textproto.NewReader, url.Parse, exec.Command, user.Current, filepath.Glob, regexp.MustCompile,
	trace.Start, sort.Ints, strconv.Itoa, strings.NewReader, testing.Benchmark, fstest.TestFS,
	tabwriter.NewWriter, template.New, time.Now, utf16.Encode, new(textscanner.Scanner),
}


func main() {
	// A method name from the command line: the linker cannot know which methods are called.
	name := "String"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	flag.Parse()
	for _, value := range everything {
		if method := reflect.ValueOf(value).MethodByName(name); method.IsValid() {
			fmt.Println(method.Type())
		}
	}
	fmt.Println(len(everything))
}
