import socket, time, sys, urllib.request
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port))
a.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
time.sleep(0.5)
t = time.time()
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=15).status, "B served after", round(time.time()-t, 1))
except Exception as e:
    print("B failed", e, round(time.time()-t, 1))
a.settimeout(20); t = time.time()
try: print("A got", a.recv(200)[:40], round(time.time()-t,1))
except Exception as e: print("A", e)
